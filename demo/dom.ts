/**
 * A few lines of DOM building, so that the views read as the markup they make. No framework: the page is small,
 * every view owns its element and updates it in place, and nothing here outlives a tab.
 */

/** What an attribute may be given as: `false`, `null` and `undefined` leave the attribute out. */
export type AttrValue = string | number | boolean | null | undefined;

/** Attributes of {@link h} and {@link s}: `on*` functions become listeners, `testid` becomes `data-testid`. */
export type Attrs = Record<string, AttrValue | ((event: never) => void)>;

/** A child of {@link h} and {@link s}: `null`, `undefined` and `false` are skipped, strings become text. */
export type Child = Node | string | number | null | undefined | false;

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(element: Element, attrs: Attrs, children: readonly Child[]): void {
  for (const [name, value] of Object.entries(attrs)) {
    if (typeof value === 'function') {
      element.addEventListener(name.slice(2).toLowerCase(), value as EventListener);
    } else if (value === false || value === null || value === undefined) {
      continue;
    } else {
      element.setAttribute(name === 'testid' ? 'data-testid' : name, value === true ? '' : String(value));
    }
  }
  append(element, children);
}

/** Appends children to `parent`, skipping the empty ones. */
export function append(parent: Node, children: readonly Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
}

/** Replaces every child of `parent`. */
export function replace(parent: Node, ...children: Child[]): void {
  while (parent.firstChild !== null) parent.removeChild(parent.firstChild);
  append(parent, children);
}

/** An HTML element with attributes and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  apply(element, attrs, children);
  return element;
}

/** An SVG element with attributes and children. */
export function s<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG_NS, tag);
  apply(element, attrs, children);
  return element;
}

/** The element with this `id`, which the page's markup must have. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`the page has no #${id}`);
  return element as T;
}
