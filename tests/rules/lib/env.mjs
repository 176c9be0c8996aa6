// The test environment: the repo's firestore.rules loaded into the Firestore
// emulator named by FIRESTORE_EMULATOR_HOST (scripts/test.sh starts one and
// exports it), under a project id of the test file's own.

import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { initializeTestEnvironment } from '@firebase/rules-unit-testing';
import { setLogLevel } from 'firebase/firestore';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(here, '../../..');

/** The rules under test: the repo's, or FIRESTORE_RULES (used to check the suite itself). */
export const RULES_PATH = process.env.FIRESTORE_RULES
  ? resolve(process.env.FIRESTORE_RULES)
  : resolve(REPO_ROOT, 'firestore.rules');

/** host and port of the emulator, from FIRESTORE_EMULATOR_HOST. */
export function emulatorAddress() {
  const value = process.env.FIRESTORE_EMULATOR_HOST;
  const match = /^(.+):(\d+)$/.exec(value ?? '');
  if (!match) {
    throw new Error(
      'FIRESTORE_EMULATOR_HOST is not set (or not host:port): run these tests through ' +
        'scripts/test.sh, or start an emulator with eval "$(emulator/start.sh)" first',
    );
  }
  return { host: match[1], port: Number(match[2]) };
}

// Denied requests are expected here; the SDK would log each one as a warning.
setLogLevel('silent');

/**
 * A test environment for project `demo-rules-<name>` (demo- ids never reach a
 * real project). Each test file uses its own, so files can run side by side.
 */
export async function testEnvironment(name) {
  const { host, port } = emulatorAddress();
  return initializeTestEnvironment({
    projectId: `demo-rules-${name}`,
    firestore: { rules: readFileSync(RULES_PATH, 'utf8'), host, port },
  });
}
