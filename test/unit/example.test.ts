/** The README's example runs as printed and says what the README says it says. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

describe('the README example', () => {
  it('reads the value back on another node and replicates the update to W nodes', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'examples/three-nodes.ts'], { timeout: 30_000 });
    assert.deepEqual(stdout.trim().split('\n'), ["[ 'hello' ]", 'true']);
  });
});
