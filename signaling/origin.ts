/**
 * Which web pages may open a connection to the signalling server. A browser names the page that opens a WebSocket
 * or a long-polling request in its `Origin` header (and WebSockets are not subject to CORS), so without a check any
 * site a user visits could join clusters, read views and relay offers in that user's browser. The default admits
 * the server's own pages (an `Origin` whose host is the request's `Host`) and pages served from loopback (a
 * development server beside it); anything else must be listed. A request without `Origin` comes from outside a
 * browser (Node, curl), where the header proves nothing either way, and is admitted: tokens guard those.
 *
 * "The server's own pages" is judged by the `Host` the browser sent, and a page of another site can make that its own
 * name too by pointing its name at the server's address (DNS rebinding). A server bound to loopback therefore takes
 * connections only for a loopback `Host`: pages of its own are served under that name.
 */

/** The allow-list: exact origins such as `https://app.example.com`, or `'*'` for any page. */
export type AllowedOrigins = '*' | readonly string[];

/** Why a request's origin was refused, or null when it is admitted. */
export function originRefusal(
  origin: string | undefined,
  host: string | undefined,
  allowed: AllowedOrigins | undefined,
  loopbackOnly = false,
): string | null {
  if (loopbackOnly && host !== undefined && !isLoopback(hostnameOf(host))) {
    return `this server answers to loopback names only, not to ${JSON.stringify(host)}`;
  }
  if (origin === undefined || allowed === '*') return null;
  if (allowed?.includes(origin) === true) return null;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return `the page's origin ${JSON.stringify(origin)} is not a URL`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `pages of ${origin} may not connect`;
  if (host !== undefined && url.host === host.toLowerCase()) return null;
  if (isLoopback(url.hostname)) return null;
  return `pages of ${origin} may not connect (not this server's, not loopback, not in its allowed origins)`;
}

/** The name in a `Host` header, without its port. */
function hostnameOf(host: string): string {
  try {
    return new URL(`http://${host}`).hostname;
  } catch {
    return host;
  }
}

/** Whether `hostname` (as a URL spells it, IPv6 in brackets) names this machine's loopback interface. */
export function isLoopback(hostname: string): boolean {
  const name = hostname.toLowerCase();
  return name === 'localhost' || name === '[::1]' || name === '::1' || /^127(\.\d{1,3}){3}$/.test(name);
}
