// The service's own documents pass the rules: the funnelflow binary, started
// against the same emulator (project demo-rules-service, dev auth), writes a
// profile, analyses (private and public) and a persona through its HTTP API;
// the owner then reads them back with the client SDK, and a signed-out client
// reads the public analysis. Documents a client writes under the rules are in
// turn read by the service.
//
// The binary: FUNNELFLOW_BIN, else <repo>/target/debug/funnelflow
// (scripts/test.sh runs this after `cargo test`, which builds it).

import { execFile, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { promisify } from 'node:util';

import { assertFails, assertSucceeds } from '@firebase/rules-unit-testing';
import { collection, doc, getDoc, getDocs, serverTimestamp, setDoc, updateDoc } from 'firebase/firestore';

import { REPO_ROOT, emulatorAddress, testEnvironment } from './lib/env.mjs';
import { newPersona } from './lib/world.mjs';

const PROJECT = 'demo-rules-service'; // testEnvironment('service') loads the rules for this id
const OWNER = 'svc-owner';
const STRANGER = 'svc-stranger';
const BIN = resolve(process.env.FUNNELFLOW_BIN ?? `${REPO_ROOT}/target/debug/funnelflow`);

function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

/** The service on the emulator; resolves once /readyz answers 200. */
async function startService() {
  try {
    accessSync(BIN, constants.X_OK);
  } catch {
    throw new Error(`no funnelflow binary at ${BIN}: run \`cargo build --bin funnelflow\` or set FUNNELFLOW_BIN`);
  }
  const port = await freePort();
  const { host, port: emuPort } = emulatorAddress();
  const env = {
    PATH: process.env.PATH ?? '',
    FIRESTORE_EMULATOR_HOST: `${host}:${emuPort}`,
    GOOGLE_CLOUD_PROJECT: PROJECT,
    FUNNELFLOW_AUTH: 'dev',
    FUNNELFLOW_HOST: '127.0.0.1',
    PORT: String(port),
    RUST_LOG: 'warn',
  };
  const child = spawn(BIN, [], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`funnelflow exited with ${child.exitCode}:\n${stderr}`);
    try {
      const r = await fetch(`${base}/readyz`);
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`funnelflow did not become ready within 60 s:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, base, env };
}

async function stopService(child) {
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

describe('documents written by the service', () => {
  const s = {};

  /** One call to the API as `token`; fails the test on an unexpected status. */
  async function api(method, path, body, expected, token = s.token) {
    const r = await fetch(`${s.base}${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    assert.equal(r.status, expected, `${method} ${path}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  before(async () => {
    s.env = await testEnvironment('service');
    await s.env.clearFirestore();
    const svc = await startService();
    s.child = svc.child;
    s.base = svc.base;
    const { stdout } = await promisify(execFile)(
      BIN,
      ['dev-token', '--uid', OWNER, '--email', 'owner@example.com', '--name', 'Owner'],
      { env: svc.env },
    );
    s.token = stdout.trim();

    // Through the HTTP API: the profile (created by the first request), a
    // rectification, a private and a public analysis, a persona.
    s.profile = await api('GET', '/v1/me', undefined, 200);
    s.patched = await api('PATCH', '/v1/me', { name: 'Owner Renamed', preferences: { theme: 'dark' } }, 200);
    const body = (n) => ({
      input: { offerDetails: `https://example.com/offer/${n}`, inputType: 'link', persona: 'Founder' },
      status: 'processing',
      aiModel: 'model-1',
      version: '1',
      requestId: `6f1c1f5e-3d7a-4c47-9c7e-2f1d7c0f6a1${n}`,
    });
    s.private = await api('POST', '/v1/analyses', body(1), 201);
    s.public = await api('POST', '/v1/analyses', body(2), 201);
    s.share = await api('POST', `/v1/analyses/${s.public.analysisId}/share`, undefined, 200);
    s.persona = await api(
      'POST',
      '/v1/personas',
      {
        name: 'Service persona',
        description: 'Created through the HTTP API.',
        characteristics: {
          demographics: { ageRange: '25-34' },
          psychographics: { values: ['speed'], interests: [], challenges: ['budget'] },
          behavior: { mediaConsumption: ['YouTube'], purchasingTriggers: [] },
        },
        isDefault: true,
      },
      201,
    );
    // An analysis that used the persona moves its counters (usageCount, lastUsedAt).
    await api('POST', '/v1/analyses', { ...body(3), input: { ...body(3).input, customPersonaId: s.persona.personaId } }, 201);

    s.owner = s.env.authenticatedContext(OWNER).firestore();
    s.stranger = s.env.authenticatedContext(STRANGER).firestore();
    s.anon = s.env.unauthenticatedContext().firestore();
  });

  after(async () => {
    await stopService(s.child);
    await s.env?.cleanup();
  });

  const path = {
    profile: () => `users/${OWNER}`,
    analysis: (a) => `users/${OWNER}/analyses/${a.analysisId}`,
    persona: (id = s.persona.personaId) => `users/${OWNER}/personas/${id}`,
  };

  it('the owner reads the profile the service created and rectified', async () => {
    const snap = await assertSucceeds(getDoc(doc(s.owner, path.profile())));
    assert.equal(snap.get('userId'), OWNER);
    assert.equal(snap.get('name'), 'Owner Renamed');
    assert.equal(snap.get('preferences.theme'), 'dark');
    assert.equal(snap.get('role'), 'user');
  });

  it('the owner reads the private analysis', async () => {
    const snap = await assertSucceeds(getDoc(doc(s.owner, path.analysis(s.private))));
    assert.equal(snap.get('analysisId'), s.private.analysisId);
    assert.equal(snap.get('sharing.isPublic'), false);
  });

  it('the owner reads the public analysis', async () => {
    const snap = await assertSucceeds(getDoc(doc(s.owner, path.analysis(s.public))));
    assert.equal(snap.get('sharing.shareToken'), s.share.shareToken);
  });

  it('the owner lists their analyses', async () => {
    const snap = await assertSucceeds(getDocs(collection(s.owner, `users/${OWNER}/analyses`)));
    assert.equal(snap.size, 3);
  });

  it('the owner reads the persona, its counters moved by an analysis', async () => {
    const snap = await assertSucceeds(getDoc(doc(s.owner, path.persona())));
    assert.equal(snap.get('name'), 'Service persona');
    assert.equal(snap.get('metadata.usageCount'), 1);
  });

  it('the owner lists their personas', async () => {
    const snap = await assertSucceeds(getDocs(collection(s.owner, `users/${OWNER}/personas`)));
    assert.equal(snap.size, 1);
  });

  it('a signed-out client reads the public analysis', async () => {
    const snap = await assertSucceeds(getDoc(doc(s.anon, path.analysis(s.public))));
    assert.equal(snap.get('sharing.isPublic'), true);
  });

  it('a signed-out client cannot read the private analysis', () =>
    assertFails(getDoc(doc(s.anon, path.analysis(s.private)))));

  it('another user cannot read the profile', () => assertFails(getDoc(doc(s.stranger, path.profile()))));

  it('another user cannot read the persona', () => assertFails(getDoc(doc(s.stranger, path.persona()))));

  it('the owner may rename the profile the service wrote', () =>
    assertSucceeds(updateDoc(doc(s.owner, path.profile()), { name: 'Owner Direct', 'preferences.theme': 'light' })));

  it('the owner still cannot raise the plan of the profile the service wrote', () =>
    assertFails(updateDoc(doc(s.owner, path.profile()), { 'subscription.planType': 'enterprise' })));

  it('the owner may edit the persona the service wrote; the service reads the result', async () => {
    await assertSucceeds(
      updateDoc(doc(s.owner, path.persona()), {
        description: 'Edited directly by the web app.',
        'metadata.updatedAt': serverTimestamp(),
      }),
    );
    const p = await api('GET', `/v1/personas/${s.persona.personaId}`, undefined, 200);
    assert.equal(p.description, 'Edited directly by the web app.');
    assert.equal(p.metadata.usageCount, 1);
  });

  it('the owner cannot reset the counters of the persona the service wrote', () =>
    assertFails(updateDoc(doc(s.owner, path.persona()), { 'metadata.usageCount': 0 })));

  it('a persona the owner creates under the rules is one the service reads and uses', async () => {
    await assertSucceeds(setDoc(doc(s.owner, path.persona('web-made')), newPersona(OWNER, 'web-made')));
    const p = await api('GET', '/v1/personas/web-made', undefined, 200);
    assert.equal(p.personaId, 'web-made');
    assert.equal(p.metadata.usageCount, 0);
    const a = await api(
      'POST',
      '/v1/analyses',
      {
        input: { offerDetails: 'https://example.com/offer/4', inputType: 'link', persona: 'Agency', customPersonaId: 'web-made' },
        status: 'processing',
        aiModel: 'model-1',
        version: '1',
        requestId: '6f1c1f5e-3d7a-4c47-9c7e-2f1d7c0f6a14',
      },
      201,
    );
    assert.equal(a.input.customPersonaId, 'web-made');
  });
});
