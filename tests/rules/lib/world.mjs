// The data every test starts from, shaped exactly as the service stores it
// (src/domain/{users,analyses,personas}.rs), and the clients that talk to it.

import { after, before, beforeEach } from 'node:test';

import { Timestamp, doc, serverTimestamp, writeBatch } from 'firebase/firestore';

import { testEnvironment } from './env.mjs';

export const ALICE = 'alice';
export const BOB = 'bob';
export const ADMIN = 'admin-ann';
/** A user whose token claims admin (custom claims) but whose stored role is `user`. */
export const CLAIMER = 'mallory';
/** Signed in, but no profile stored (e.g. before the first request to the service). */
export const NEWCOMER = 'newcomer';

export const T0 = Timestamp.fromDate(new Date('2026-11-01T10:00:00.000Z'));
export const T1 = Timestamp.fromDate(new Date('2026-11-20T08:30:00.000Z'));

/** A profile as the service provisions it (users.rs default_fields), with `role`. */
export function profile(uid, role = 'user') {
  return {
    userId: uid,
    email: `${uid}@example.com`,
    name: `${uid} Example`,
    authProvider: 'google',
    profileImage: null,
    role,
    createdAt: T0,
    lastLoginAt: T1,
    subscription: {
      planType: 'free',
      startDate: T0,
      endDate: null,
      status: 'active',
      features: [],
      analysisLimit: 10,
      copyLimit: 20,
    },
    preferences: {
      defaultPersona: null,
      emailNotifications: true,
      analyticsOptOut: false,
      theme: 'system',
    },
    metadata: { totalAnalyses: 2, totalCopyGenerations: 1, lastAnalysisAt: T1 },
    usage: { period: '2026-11', analyses: 2, copyGenerations: 1 },
  };
}

/** An analysis as stored (analyses.rs Analysis); `shared` makes it public with a token. */
export function analysis(uid, id, shared = false) {
  return {
    analysisId: id,
    userId: uid,
    input: {
      offerDetails: 'A course that teaches founders to write landing pages',
      inputType: 'text',
      persona: 'Founder',
    },
    results: {
      analysis: [
        { category: 'Clarity', score: 72, finding: 'The headline is vague', recommendation: 'Name the outcome' },
      ],
      sampleCopy: { headline: 'Ship pages that sell', body: 'In one weekend.', callToAction: 'Start now' },
      confidence: 0.82,
      processingTimeMs: 1234,
    },
    metadata: {
      createdAt: T0,
      updatedAt: T1,
      status: 'completed',
      aiModel: 'model-1',
      version: '1.0',
      requestId: '6f1c1f5e-3d7a-4c47-9c7e-2f1d7c0f6a11',
    },
    sharing: shared
      ? { isPublic: true, shareToken: `tok-${uid}-${id}-0123456789abcdef`, sharedAt: T1 }
      : { isPublic: false, shareToken: null, sharedAt: null },
  };
}

/** A persona as the service stores it, already used by an analysis (non-zero counters). */
export function storedPersona(uid, id) {
  return {
    personaId: id,
    userId: uid,
    name: 'Busy founder',
    description: 'Runs a small software company and has no time.',
    characteristics: {
      demographics: { ageRange: '30-45', occupation: 'Founder', income: null },
      psychographics: { values: ['time'], interests: ['growth', 'SaaS'], challenges: ['churn'] },
      behavior: { decisionMaking: 'data-driven', mediaConsumption: ['podcasts'], purchasingTriggers: ['free trial'] },
    },
    metadata: { isDefault: false, createdAt: T0, updatedAt: T1, usageCount: 3, lastUsedAt: T1 },
  };
}

/** A persona a client may create: the stored shape with fresh metadata (usageCount 0, lastUsedAt null). */
export function newPersona(uid, id) {
  return {
    personaId: id,
    userId: uid,
    name: 'Agency owner',
    description: 'Runs a marketing agency of ten people.',
    characteristics: {
      demographics: { ageRange: '35-50', occupation: 'Agency owner', income: '100k-200k' },
      psychographics: { values: ['quality'], interests: ['design'], challenges: ['hiring'] },
      behavior: { decisionMaking: 'consensus', mediaConsumption: ['newsletters'], purchasingTriggers: ['case studies'] },
    },
    metadata: {
      isDefault: false,
      createdAt: serverTimestamp(),
      updatedAt: serverTimestamp(),
      usageCount: 0,
      lastUsedAt: null,
    },
  };
}

const list20 = (c) => Array.from({ length: 20 }, (_, i) => `${i}`.padEnd(200, c));

/** The largest persona API.md allows: every string at its bound, every list 20 items of 200 characters. */
export function maximalPersona(uid, id) {
  return {
    personaId: id,
    userId: uid,
    name: 'N'.repeat(100),
    description: 'D'.repeat(500),
    characteristics: {
      demographics: { ageRange: 'a'.repeat(200), occupation: 'o'.repeat(200), income: 'i'.repeat(200) },
      psychographics: { values: list20('v'), interests: list20('i'), challenges: list20('c') },
      behavior: { decisionMaking: 'd'.repeat(200), mediaConsumption: list20('m'), purchasingTriggers: list20('p') },
    },
    metadata: {
      isDefault: true,
      createdAt: serverTimestamp(),
      updatedAt: serverTimestamp(),
      usageCount: 0,
      lastUsedAt: null,
    },
  };
}

/** 1 MB of text: far past every bound, still under Firestore's document limit. */
export const MEGABYTE = 'x'.repeat(1_000_000);

/** A copy of `obj` with the dotted `path` set to `value` (plain objects are copied, sentinels kept). */
export function withField(obj, path, value) {
  const out = copy(obj);
  const keys = path.split('.');
  let node = out;
  for (const k of keys.slice(0, -1)) {
    node = node[k];
  }
  node[keys.at(-1)] = value;
  return out;
}

/** A copy of `obj` without the dotted `path`. */
export function withoutField(obj, path) {
  const out = copy(obj);
  const keys = path.split('.');
  let node = out;
  for (const k of keys.slice(0, -1)) {
    node = node[k];
  }
  delete node[keys.at(-1)];
  return out;
}

function copy(v) {
  if (Array.isArray(v)) return v.map(copy);
  if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, copy(x)]));
  }
  return v; // Timestamps, sentinels, primitives
}

/** Every document the tests start from, by path. */
export function seedDocuments() {
  return {
    [`users/${ALICE}`]: profile(ALICE),
    [`users/${BOB}`]: profile(BOB),
    [`users/${ADMIN}`]: profile(ADMIN, 'admin'),
    [`users/${CLAIMER}`]: profile(CLAIMER),

    [`users/${ALICE}/analyses/a-private`]: analysis(ALICE, 'a-private'),
    [`users/${ALICE}/analyses/a-public`]: analysis(ALICE, 'a-public', true),
    [`users/${BOB}/analyses/b-private`]: analysis(BOB, 'b-private'),
    [`users/${BOB}/analyses/b-public`]: analysis(BOB, 'b-public', true),
    [`users/${ADMIN}/analyses/x-private`]: analysis(ADMIN, 'x-private'),

    [`users/${ALICE}/personas/p-alice`]: storedPersona(ALICE, 'p-alice'),
    [`users/${BOB}/personas/p-bob`]: storedPersona(BOB, 'p-bob'),

    [`users/${ALICE}/apiKeys/k-alice`]: {
      keyId: 'k-alice',
      name: 'CI',
      permissions: ['analyses:read'],
      secretHash: 'hmac-sha256:0f3a9c',
      prefix: 'ffk_kalice',
      isActive: true,
      createdAt: T0,
      lastUsedAt: null,
      expiresAt: null,
    },
    [`users/${BOB}/apiKeys/k-bob`]: {
      keyId: 'k-bob',
      name: 'Zapier',
      permissions: ['personas:read'],
      secretHash: 'hmac-sha256:77aa01',
      prefix: 'ffk_kbob',
      isActive: false,
      createdAt: T0,
      lastUsedAt: null,
      expiresAt: null,
    },
    [`users/${ALICE}/idempotency/i-alice`]: {
      principal: ALICE,
      bodyHash: 'sha256:abcd',
      status: 201,
      body: '{"personaId":"p-alice"}',
      createdAt: T1,
      expiresAt: T1,
    },
    [`users/${BOB}/idempotency/i-bob`]: {
      principal: BOB,
      bodyHash: 'sha256:ef01',
      status: 201,
      body: '{}',
      createdAt: T1,
      expiresAt: T1,
    },
    [`users/${ALICE}/usageCounters/2026-11`]: { analyses: 2, copyGenerations: 1 },
    [`users/${BOB}/usageCounters/2026-11`]: { analyses: 7, copyGenerations: 0 },

    [`analytics/e-alice`]: { eventType: 'page.view', eventData: { page: '/' }, userId: ALICE, timestamp: T1 },
    [`analytics/e-bob`]: { eventType: 'analysis.created', eventData: {}, userId: BOB, timestamp: T1 },
    [`auditLogs/l-alice`]: {
      actor: ALICE,
      action: 'profile.update',
      target: `users/${ALICE}`,
      at: T1,
      requestId: 'r1',
      details: { fields: ['name'] },
    },
    [`system/config`]: { features: { sharing: true, copyGeneration: true } },
    [`system/schema`]: { version: 1 },
    [`tombstones/gone-user`]: { erasedAt: T1 },
    [`shareTokens/tok-alice`]: { path: `users/${ALICE}/analyses/a-public` },
  };
}

/**
 * Per test file: a test environment of its own, and before every test an empty
 * database seeded (with rules disabled) with seedDocuments(). Call inside a describe().
 */
export function useWorld(name) {
  const world = {};
  before(async () => {
    world.env = await testEnvironment(name);
    const env = world.env;
    world.alice = env.authenticatedContext(ALICE, { email: `${ALICE}@example.com` }).firestore();
    world.bob = env.authenticatedContext(BOB).firestore();
    world.admin = env.authenticatedContext(ADMIN).firestore();
    // Custom claims that a careless rule might trust.
    world.claimer = env.authenticatedContext(CLAIMER, { admin: true, role: 'admin' }).firestore();
    world.newcomer = env.authenticatedContext(NEWCOMER).firestore();
    world.anon = env.unauthenticatedContext().firestore();
  });
  beforeEach(async () => {
    await world.env.clearFirestore();
    await world.env.withSecurityRulesDisabled(async (ctx) => {
      const db = ctx.firestore();
      const batch = writeBatch(db);
      for (const [path, data] of Object.entries(seedDocuments())) {
        batch.set(doc(db, path), data);
      }
      await batch.commit();
    });
  });
  after(async () => {
    await world.env?.cleanup();
  });
  return world;
}
