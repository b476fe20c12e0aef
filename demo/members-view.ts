/**
 * The members of the view: each node's colour on the ring, its state in the view (alive or suspect), the state of
 * this tab's peer connection to it (or `via server` for a member the partial mesh does not link this tab to: frames
 * to it go through the signalling server's relay), and its share of the ring.
 */
import type { PeerState, ViewMember } from '../client/index.ts';
import { h, replace } from './dom.ts';
import { formatTime } from './format.ts';
import type { Ownership } from './ring-view.ts';

/** The members list. */
export class MembersView {
  /** The list element (`data-testid="members"`). */
  readonly element: HTMLUListElement;
  readonly #self: string;
  readonly #domain: string;

  constructor(self: string, domain: string) {
    this.#self = self;
    this.#domain = domain;
    this.element = h('ul', { class: 'members', testid: 'members', 'aria-label': 'Members of the view' });
  }

  /** Redraws the list. */
  update(
    members: readonly ViewMember[],
    peers: Readonly<Record<string, PeerState>>,
    ownership: Ownership,
    colors: ReadonlyMap<string, string>,
  ): void {
    replace(
      this.element,
      ...members.map((member) => {
        const self = member.id === this.#self;
        const peer: PeerState | 'self' | 'none' = self ? 'self' : (peers[member.id] ?? 'none');
        const primary = ownership.primary.get(member.id) ?? 0;
        const replicas = ownership.replica.get(member.id) ?? 0;
        return h(
          'li',
          {
            class: self ? 'member self' : 'member',
            'data-member-id': member.id,
            'data-state': member.state,
            'data-peer': peer,
          },
          h('span', { class: 'swatch', style: `background:${colors.get(member.id) ?? '#888'}`, 'aria-hidden': 'true' }),
          h(
            'div',
            { class: 'member-main' },
            h(
              'div',
              { class: 'member-line' },
              h('code', { class: 'member-id' }, member.id),
              self ? h('span', { class: 'badge you' }, 'this tab') : null,
              h('span', { class: `badge state-${member.state}`, title: 'State in the view' }, member.state),
              peer === 'self'
                ? null
                : h(
                    'span',
                    {
                      class: `badge peer-${peer}`,
                      title:
                        peer === 'none'
                          ? 'No peer connection from this tab: frames go through the signalling server'
                          : 'Peer connection from this tab',
                    },
                    peerLabel(peer),
                  ),
            ),
            h(
              'div',
              { class: 'member-sub' },
              `primary of ${primary} · replica of ${replicas} · joined ${formatTime(member.joinedAt).slice(0, 8)}`,
              member.domain === this.#domain ? ' · same profile' : ' · other profile',
            ),
          ),
        );
      }),
    );
  }
}

function peerLabel(peer: PeerState | 'none'): string {
  return peer === 'none' ? 'via server' : peer;
}
