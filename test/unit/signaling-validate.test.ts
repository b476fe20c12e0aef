/** Payload validators: what each event accepts, what it refuses and with which code; none ever throws. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { CLIENT_EVENT_NAMES } from '../../signaling/events.ts';
import {
  DEFAULT_PAYLOAD_LIMITS,
  VALIDATORS,
  validateEmpty,
  validateHeartbeat,
  validateJoin,
  validateLifecycle,
  validateMetrics,
  validateReport,
  validateSignal,
  validateView,
  type Validation,
} from '../../signaling/validate.ts';

const code = (result: Validation<unknown>) => (result.ok ? 'ok' : result.code);

describe('payload validation', () => {
  it('accepts a join with and without a token or a protocol version and returns only the known fields', () => {
    assert.deepEqual(validateJoin({ cluster: 'c-1', nodeId: 'n_1', domain: 'd' }), {
      ok: true,
      value: { cluster: 'c-1', nodeId: 'n_1', domain: 'd' },
    });
    assert.deepEqual(validateJoin({ cluster: 'c', nodeId: 'n', domain: 'd', token: 't.s' }), {
      ok: true,
      value: { cluster: 'c', nodeId: 'n', domain: 'd', token: 't.s' },
    });
    assert.deepEqual(validateJoin({ cluster: 'c', nodeId: 'n', domain: 'd', protocol: 3 }), {
      ok: true,
      value: { cluster: 'c', nodeId: 'n', domain: 'd', protocol: 3 },
    });
  });

  it('refuses joins with a missing, mistyped, badly named or extra field', () => {
    const good = { cluster: 'c', nodeId: 'n', domain: 'd' };
    for (const bad of [
      undefined,
      null,
      'join',
      [good],
      { nodeId: 'n', domain: 'd' },
      { ...good, cluster: 'has space' },
      { ...good, cluster: 'x'.repeat(65) },
      { ...good, nodeId: '' },
      { ...good, nodeId: 42 },
      { ...good, domain: 'é' },
      { ...good, token: '' },
      { ...good, token: 7 },
      { ...good, token: 'x'.repeat(1025) },
      { ...good, protocol: 0 },
      { ...good, protocol: 1.5 },
      { ...good, protocol: '1' },
      { ...good, signedFrom: 0 },
      { ...good, signedFrom: 2.5 },
      { ...good, signedFrom: 2 ** 48 + 1 },
      { ...good, signedFrom: '1' },
      { ...good, admin: true },
    ]) {
      assert.equal(code(validateJoin(bad)), 'ERR_INVALID_ARGUMENT', JSON.stringify(bad));
    }
  });

  it('accepts a heartbeat with or without a known epoch', () => {
    assert.deepEqual(validateHeartbeat({}), { ok: true, value: {} });
    assert.deepEqual(validateHeartbeat({ epoch: 17 }), { ok: true, value: { epoch: 17 } });
    for (const bad of [null, { epoch: -1 }, { epoch: 1.5 }, { epoch: '3' }, { epoch: 1, more: 1 }]) {
      assert.equal(code(validateHeartbeat(bad)), 'ERR_INVALID_ARGUMENT', JSON.stringify(bad));
    }
  });

  it('accepts the signals simple-peer emits', () => {
    for (const data of [
      { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n' },
      { type: 'answer', sdp: 'v=0\r\n' },
      {
        type: 'candidate',
        candidate: { candidate: 'candidate:1 1 udp 1 x.local 5000 typ host', sdpMLineIndex: 0, sdpMid: '0' },
      },
      { renegotiate: true },
      { transceiverRequest: { kind: 'audio', init: null } },
    ]) {
      assert.deepEqual(validateSignal({ to: 'peer', data }), { ok: true, value: { to: 'peer', data } });
    }
  });

  it('refuses signals without a valid receiver or with data that is not a JSON object', () => {
    for (const bad of [
      { to: 'peer' },
      { data: {} },
      { to: 'not a node', data: {} },
      { to: 'peer', data: 'offer' },
      { to: 'peer', data: [1, 2] },
      { to: 'peer', data: null },
      { to: 'peer', data: { blob: Buffer.from('binary') } },
      { to: 'peer', data: { n: Number.NaN } },
      { to: 'peer', data: { a: { b: { c: { d: { e: { f: { g: { h: { i: 1 } } } } } } } } } },
      { to: 'peer', data: {}, from: 'someone-else' },
    ]) {
      assert.equal(code(validateSignal(bad)), 'ERR_INVALID_ARGUMENT', JSON.stringify(bad));
    }
  });

  it('refuses signal data over maxSignalBytes with ERR_TOO_LARGE and accepts it at the limit', () => {
    const limits = { ...DEFAULT_PAYLOAD_LIMITS, maxSignalBytes: 100 };
    const overhead = JSON.stringify({ sdp: '' }).length;
    const at = { sdp: 'x'.repeat(100 - overhead) };
    const over = { sdp: 'x'.repeat(101 - overhead) };
    assert.equal(code(validateSignal({ to: 'p', data: at }, limits)), 'ok');
    assert.equal(code(validateSignal({ to: 'p', data: over }, limits)), 'ERR_TOO_LARGE');
    const multiByte = { sdp: 'é'.repeat(50) };
    assert.equal(code(validateSignal({ to: 'p', data: multiByte }, limits)), 'ERR_TOO_LARGE');
  });

  it('accepts a lifecycle announcement of active, hidden or frozen and returns only the state', () => {
    for (const state of ['active', 'hidden', 'frozen'] as const) {
      assert.deepEqual(validateLifecycle({ state }), { ok: true, value: { state } });
    }
  });

  it('refuses lifecycle payloads that are not an object with exactly a known state, naming what is wrong', () => {
    const cases: [unknown, string][] = [
      [undefined, 'lifecycle: the payload must be an object'],
      ['hidden', 'lifecycle: the payload must be an object'],
      [['hidden'], 'lifecycle: the payload must be an object'],
      [{}, 'lifecycle: state is missing'],
      [{ state: 'hidden', since: 1 }, 'lifecycle: unknown field "since"'],
      [{ state: 'discarded' }, "lifecycle: state must be one of 'active', 'hidden', 'frozen'"],
      [{ state: 'HIDDEN' }, "lifecycle: state must be one of 'active', 'hidden', 'frozen'"],
      [{ state: 1 }, "lifecycle: state must be one of 'active', 'hidden', 'frozen'"],
      [{ state: null }, "lifecycle: state must be one of 'active', 'hidden', 'frozen'"],
    ];
    for (const [bad, message] of cases) {
      assert.deepEqual(
        validateLifecycle(bad),
        { ok: false, code: 'ERR_INVALID_ARGUMENT', message },
        JSON.stringify(bad),
      );
    }
  });

  it('accepts a report naming a node id and refuses anything else', () => {
    assert.deepEqual(validateReport({ nodeId: 'n' }), { ok: true, value: { nodeId: 'n' } });
    for (const bad of [{}, { nodeId: '' }, { nodeId: 'n', why: 'x' }, { nodeId: ['n'] }]) {
      assert.equal(code(validateReport(bad)), 'ERR_INVALID_ARGUMENT', JSON.stringify(bad));
    }
  });

  it('accepts a flat metrics snapshot of finite numbers with Prometheus-safe names', () => {
    assert.deepEqual(validateMetrics({ puts_total: 3, p50_ms: 0.7, _x: -1 }), {
      ok: true,
      value: { puts_total: 3, p50_ms: 0.7, _x: -1 },
    });
    for (const bad of [
      [],
      null,
      { puts: '3' },
      { puts: null },
      { puts: Number.POSITIVE_INFINITY },
      { 'bad-name': 1 },
      { '9lives': 1 },
      { nested: { a: 1 } },
    ]) {
      assert.equal(code(validateMetrics(bad)), 'ERR_INVALID_ARGUMENT', JSON.stringify(bad));
    }
  });

  it('refuses a metrics snapshot with more than maxMetricsEntries entries with ERR_TOO_LARGE', () => {
    const limits = { ...DEFAULT_PAYLOAD_LIMITS, maxMetricsEntries: 3 };
    assert.equal(code(validateMetrics({ a: 1, b: 2, c: 3 }, limits)), 'ok');
    assert.equal(code(validateMetrics({ a: 1, b: 2, c: 3, d: 4 }, limits)), 'ERR_TOO_LARGE');
  });

  it('accepts only an empty object for leave and get-metrics', () => {
    assert.deepEqual(validateEmpty({}, 'leave'), { ok: true, value: {} });
    for (const bad of [undefined, null, [], { now: true }]) {
      assert.equal(code(validateEmpty(bad, 'get-metrics')), 'ERR_INVALID_ARGUMENT', JSON.stringify(bad));
    }
  });

  it('has a validator for every client event that never throws, whatever it is given', () => {
    assert.deepEqual(Object.keys(VALIDATORS).sort(), [...CLIENT_EVENT_NAMES].sort());
    fc.assert(
      fc.property(fc.constantFrom(...CLIENT_EVENT_NAMES), fc.anything({ withNullPrototype: true }), (event, input) => {
        const result = VALIDATORS[event](input, DEFAULT_PAYLOAD_LIMITS);
        assert.ok(result.ok || result.code === 'ERR_INVALID_ARGUMENT' || result.code === 'ERR_TOO_LARGE');
      }),
      { numRuns: 2000 },
    );
  });
});

describe('view validation (client side)', () => {
  const member = {
    id: 'k0123456789abcdef',
    domain: 'd-1',
    placement: 'Zm9v_-',
    state: 'alive',
    joinedAt: 1700000000000,
  };
  const good = { cluster: 'shop', epoch: 1700000000123, members: [member, { ...member, id: 'n2', state: 'suspect' }] };

  it('accepts a view as the server sends it, and one with no members', () => {
    assert.deepEqual(validateView(good), { ok: true, value: good });
    assert.ok(validateView({ cluster: 'c', epoch: 0, members: [] }).ok);
    assert.ok(validateView({ ...good, members: [{ ...member, placement: '' }] }).ok);
    assert.ok(validateView({ ...good, members: [{ ...member, signedFrom: 1025 }] }).ok);
  });

  it('refuses a view with a missing, mistyped, out-of-range or extra field anywhere', () => {
    for (const bad of [
      null,
      [],
      { cluster: 'shop', epoch: 1 },
      { ...good, cluster: '../x' },
      { ...good, epoch: -1 },
      { ...good, epoch: 1.5 },
      { ...good, members: 'all' },
      { ...good, extra: true },
      { ...good, members: Array.from({ length: 4097 }, (_, i) => ({ ...member, id: `n${i}` })) },
      { ...good, members: [member, member] },
      { ...good, members: [{ ...member, id: 'has space' }] },
      { ...good, members: [{ ...member, domain: '' }] },
      { ...good, members: [{ ...member, placement: 'p'.repeat(65) }] },
      { ...good, members: [{ ...member, placement: 7 }] },
      { ...good, members: [{ ...member, state: 'leader' }] },
      { ...good, members: [{ ...member, joinedAt: Number.NaN }] },
      { ...good, members: [{ ...member, joinedAt: '1' }] },
      { ...good, members: [{ ...member, role: 'admin' }] },
      { ...good, members: [{ ...member, signedFrom: 0 }] },
      { ...good, members: [{ ...member, signedFrom: 'all' }] },
      { ...good, members: [{ id: 'n1', domain: 'd', placement: '', state: 'alive' }] },
    ]) {
      assert.equal(code(validateView(bad)), 'ERR_INVALID_ARGUMENT', JSON.stringify(bad)?.slice(0, 200));
    }
  });
});
