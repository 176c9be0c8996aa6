// The rest of the user's subtree (API keys, idempotency records, usage
// counters, anything the service adds there): the owner reads, nobody writes.
// Root collections: analytics (admins read), system (signed-in users read,
// admins write), auditLogs and everything else (denied).

import { describe, it } from 'node:test';

import { assertFails, assertSucceeds } from '@firebase/rules-unit-testing';
import {
  collection,
  deleteDoc,
  doc,
  getDoc,
  getDocs,
  orderBy,
  query,
  setDoc,
  updateDoc,
  where,
} from 'firebase/firestore';

import { ADMIN, ALICE, BOB, NEWCOMER, T1, useWorld } from './lib/world.mjs';

describe('service-owned documents', () => {
  const w = useWorld('service-owned');

  describe('users/{uid}/apiKeys (API keys)', () => {
    const key = (db, uid = ALICE, id = 'k-alice') => doc(db, `users/${uid}/apiKeys/${id}`);
    it('the owner gets one', () => assertSucceeds(getDoc(key(w.alice))));
    it('the owner lists them', () => assertSucceeds(getDocs(collection(w.alice, `users/${ALICE}/apiKeys`))));
    it('another user cannot get one', () => assertFails(getDoc(key(w.bob))));
    it('another user cannot list them', () => assertFails(getDocs(collection(w.bob, `users/${ALICE}/apiKeys`))));
    it('a signed-out client cannot get one', () => assertFails(getDoc(key(w.anon))));
    it('an admin cannot get one', () => assertFails(getDoc(key(w.admin))));
    it('the owner cannot create a key', () =>
      assertFails(
        setDoc(key(w.alice, ALICE, 'k-new'), { keyId: 'k-new', name: 'mine', permissions: ['analyses:write'], isActive: true }),
      ));
    it('the owner cannot widen a key\u2019s permissions', () =>
      assertFails(updateDoc(key(w.alice), { permissions: ['analyses:read', 'analyses:write', 'export:read'] })));
    it('the owner cannot extend a key\u2019s expiry', () => assertFails(updateDoc(key(w.alice), { expiresAt: null, name: 'CI' })));
    it('the owner cannot reactivate a revoked key', () =>
      assertFails(updateDoc(doc(w.bob, `users/${BOB}/apiKeys/k-bob`), { isActive: true })));
    it('the owner cannot replace the stored hash', () => assertFails(updateDoc(key(w.alice), { secretHash: 'known' })));
    it('the owner cannot delete a key (revocation goes through the service)', () => assertFails(deleteDoc(key(w.alice))));
    it('another user cannot create a key for the owner', () =>
      assertFails(setDoc(key(w.bob, ALICE, 'k-new'), { keyId: 'k-new', isActive: true })));
    it('an admin cannot create a key', () =>
      assertFails(setDoc(key(w.admin, ALICE, 'k-new'), { keyId: 'k-new', isActive: true })));
    it('a signed-out client cannot delete a key', () => assertFails(deleteDoc(key(w.anon))));
  });

  describe('users/{uid}/idempotency (idempotency records)', () => {
    const rec = (db, uid = ALICE, id = 'i-alice') => doc(db, `users/${uid}/idempotency/${id}`);
    it('the owner gets one', () => assertSucceeds(getDoc(rec(w.alice))));
    it('another user cannot get one', () => assertFails(getDoc(rec(w.bob))));
    it('a signed-out client cannot get one', () => assertFails(getDoc(rec(w.anon))));
    it('an admin cannot get one', () => assertFails(getDoc(rec(w.admin))));
    it('the owner cannot plant a record (a forged replay)', () =>
      assertFails(setDoc(rec(w.alice, ALICE, 'i-new'), { status: 201, body: '{"role":"admin"}', createdAt: T1 })));
    it('the owner cannot change a record', () => assertFails(updateDoc(rec(w.alice), { body: '{}' })));
    it('the owner cannot delete a record', () => assertFails(deleteDoc(rec(w.alice))));
    it('another user cannot plant a record for the owner', () =>
      assertFails(setDoc(rec(w.bob, ALICE, 'i-new'), { status: 201 })));
  });

  describe('users/{uid}/usageCounters (usage counters)', () => {
    const ctr = (db, uid = ALICE) => doc(db, `users/${uid}/usageCounters/2026-11`);
    it('the owner reads theirs', () => assertSucceeds(getDoc(ctr(w.alice))));
    it('another user cannot read them', () => assertFails(getDoc(ctr(w.bob))));
    it('a signed-out client cannot read them', () => assertFails(getDoc(ctr(w.anon))));
    it('the owner cannot reset them', () => assertFails(updateDoc(ctr(w.alice), { analyses: 0 })));
    it('the owner cannot start a new period', () =>
      assertFails(setDoc(doc(w.alice, `users/${ALICE}/usageCounters/2026-12`), { analyses: -100 })));
    it('the owner cannot delete them', () => assertFails(deleteDoc(ctr(w.alice))));
    it('an admin cannot change them', () => assertFails(updateDoc(ctr(w.admin), { analyses: 0 })));
  });

  describe('other documents in the user\u2019s subtree', () => {
    it('the owner reads a document in a collection the rules do not name', () =>
      assertSucceeds(getDoc(doc(w.alice, `users/${ALICE}/trendDays/2026-11-20`))));
    it('the owner reads nested documents of their subtree', () =>
      assertSucceeds(getDocs(collection(w.alice, `users/${ALICE}/personas/p-alice/history`))));
    it('another user cannot read them', () => assertFails(getDoc(doc(w.bob, `users/${ALICE}/trendDays/2026-11-20`))));
    it('the owner cannot write in a collection the rules do not name', () =>
      assertFails(setDoc(doc(w.alice, `users/${ALICE}/trendDays/2026-11-20`), { count: 0 })));
    it('the owner cannot write a tombstone of their own', () =>
      assertFails(setDoc(doc(w.alice, `users/${ALICE}/tombstone/erasure`), { erasedAt: T1 })));
    it('the owner cannot write below a persona', () =>
      assertFails(setDoc(doc(w.alice, `users/${ALICE}/personas/p-alice/history/h1`), { x: 1 })));
    it('the owner cannot write below an analysis', () =>
      assertFails(setDoc(doc(w.alice, `users/${ALICE}/analyses/a-private/notes/n1`), { x: 1 })));
  });

  describe('analytics (usage events)', () => {
    const ev = (db, id = 'e-alice') => doc(db, `analytics/${id}`);
    it('an admin gets an event', () => assertSucceeds(getDoc(ev(w.admin))));
    it('an admin lists events', () => assertSucceeds(getDocs(collection(w.admin, 'analytics'))));
    it('an admin queries events by type, newest first', () =>
      assertSucceeds(
        getDocs(query(collection(w.admin, 'analytics'), where('eventType', '==', 'page.view'), orderBy('timestamp', 'desc'))),
      ));
    it('a user cannot get their own event', () => assertFails(getDoc(ev(w.alice))));
    it('a user cannot list their own events', () =>
      assertFails(getDocs(query(collection(w.alice, 'analytics'), where('userId', '==', ALICE)))));
    it('a user cannot list events', () => assertFails(getDocs(collection(w.bob, 'analytics'))));
    it('a token claiming admin cannot get an event', () => assertFails(getDoc(ev(w.claimer))));
    it('a token claiming admin cannot list events', () => assertFails(getDocs(collection(w.claimer, 'analytics'))));
    it('a signed-in user without a profile cannot list events', () =>
      assertFails(getDocs(collection(w.newcomer, 'analytics'))));
    it('a signed-out client cannot get an event', () => assertFails(getDoc(ev(w.anon))));
    it('a user cannot write an event (the service anonymizes them)', () =>
      assertFails(setDoc(ev(w.alice, 'e-new'), { eventType: 'x', eventData: {}, userId: ALICE })));
    it('a user cannot write an event in another user\u2019s name', () =>
      assertFails(setDoc(ev(w.alice, 'e-new'), { eventType: 'x', eventData: {}, userId: BOB })));
    it('a signed-out client cannot write an event', () => assertFails(setDoc(ev(w.anon, 'e-new'), { eventType: 'x' })));
    it('an admin cannot write an event', () => assertFails(setDoc(ev(w.admin, 'e-new'), { eventType: 'x' })));
    it('an admin cannot change an event', () => assertFails(updateDoc(ev(w.admin), { userId: 'someone' })));
    it('an admin cannot delete an event', () => assertFails(deleteDoc(ev(w.admin))));
  });

  describe('system (configuration and feature flags)', () => {
    const sys = (db, id = 'config') => doc(db, `system/${id}`);
    it('a signed-in user gets the config', () => assertSucceeds(getDoc(sys(w.alice))));
    it('a signed-in user without a profile gets the config', () => assertSucceeds(getDoc(sys(w.newcomer))));
    it('a signed-in user lists system documents', () => assertSucceeds(getDocs(collection(w.bob, 'system'))));
    it('an admin gets the config', () => assertSucceeds(getDoc(sys(w.admin))));
    it('a signed-out client cannot get the config', () => assertFails(getDoc(sys(w.anon))));
    it('a signed-out client cannot list system documents', () => assertFails(getDocs(collection(w.anon, 'system'))));
    it('a user cannot change a feature flag', () => assertFails(updateDoc(sys(w.alice), { 'features.sharing': false })));
    it('a user cannot create a system document', () => assertFails(setDoc(sys(w.alice, 'flags'), { beta: true })));
    it('a user cannot delete a system document', () => assertFails(deleteDoc(sys(w.alice))));
    it('a token claiming admin cannot change the config', () =>
      assertFails(updateDoc(sys(w.claimer), { 'features.sharing': false })));
    it('a signed-out client cannot change the config', () => assertFails(setDoc(sys(w.anon), { x: 1 })));
    it('an admin changes a feature flag', () => assertSucceeds(updateDoc(sys(w.admin), { 'features.sharing': false })));
    it('an admin creates a system document', () => assertSucceeds(setDoc(sys(w.admin, 'flags'), { beta: true })));
    it('an admin replaces a system document', () => assertSucceeds(setDoc(sys(w.admin), { features: {} })));
    it('an admin deletes a system document', () => assertSucceeds(deleteDoc(sys(w.admin, 'schema'))));
    it('an admin cannot write below a system document', () =>
      assertFails(setDoc(doc(w.admin, 'system/config/history/h1'), { x: 1 })));
    const template = { templateId: 't1', name: 'Founder', description: 'A founder of a small company', characteristics: {} };
    it('an admin writes persona templates as a list of items', () =>
      assertSucceeds(setDoc(sys(w.admin, 'personaTemplates'), { items: [template] })));
    it('an admin empties the persona templates', () =>
      assertSucceeds(setDoc(sys(w.admin, 'personaTemplates'), { items: [] })));
    it('persona templates must be a list', () =>
      assertFails(setDoc(sys(w.admin, 'personaTemplates'), { items: { t1: template } })));
    it('persona templates hold nothing but items', () =>
      assertFails(setDoc(sys(w.admin, 'personaTemplates'), { items: [], extra: true })));
    it('persona templates hold 100 items at most', () =>
      assertFails(setDoc(sys(w.admin, 'personaTemplates'), { items: Array(101).fill(template) })));
    it('a user cannot write persona templates', () =>
      assertFails(setDoc(sys(w.alice, 'personaTemplates'), { items: [] })));
  });

  describe('auditLogs (audit records: the service writes, clients neither read nor write)', () => {
    const log = (db, id = 'l-alice') => doc(db, `auditLogs/${id}`);
    it('the actor cannot read their own audit record', () => assertFails(getDoc(log(w.alice))));
    it('a user cannot list audit records', () => assertFails(getDocs(collection(w.alice, 'auditLogs'))));
    it('a signed-out client cannot read an audit record', () => assertFails(getDoc(log(w.anon))));
    it('an admin cannot read audit records directly (GET /v1/admin/audit does)', () =>
      assertFails(getDocs(collection(w.admin, 'auditLogs'))));
    it('a user cannot write an audit record', () =>
      assertFails(setDoc(log(w.alice, 'l-new'), { actor: ALICE, action: 'role.change' })));
    it('a user cannot erase their audit trail', () => assertFails(deleteDoc(log(w.alice))));
    it('an admin cannot write an audit record', () => assertFails(setDoc(log(w.admin, 'l-new'), { actor: ADMIN })));
    it('an admin cannot rewrite an audit record', () => assertFails(updateDoc(log(w.admin), { actor: 'someone-else' })));
    it('an admin cannot delete an audit record', () => assertFails(deleteDoc(log(w.admin))));
  });

  describe('everything else is denied', () => {
    it('a user cannot read a tombstone', () => assertFails(getDoc(doc(w.alice, 'tombstones/gone-user'))));
    it('a user cannot write a tombstone (locking someone out)', () =>
      assertFails(setDoc(doc(w.alice, `tombstones/${BOB}`), { erasedAt: T1 })));
    it('a user cannot delete a tombstone (coming back after erasure)', () =>
      assertFails(deleteDoc(doc(w.alice, 'tombstones/gone-user'))));
    it('a user cannot read the invalidation feed (its entries name users)', () =>
      assertFails(getDocs(collection(w.alice, 'invalidations'))));
    it('a user cannot forge a feed entry', () =>
      assertFails(setDoc(doc(w.alice, 'invalidations/e1'), { uid: BOB, kind: 'profile' })));
    it('a user cannot move a feed head', () => assertFails(setDoc(doc(w.alice, 'invalidationHeads/0'), { seq: 1 })));
    it('a user cannot register an instance (shrinking every rate-limit share)', () =>
      assertFails(setDoc(doc(w.alice, 'instances/fake'), { seenAt: T1 })));
    it('an admin cannot read the instances', () => assertFails(getDocs(collection(w.admin, 'instances'))));
    it('a user cannot resolve a share token through a lookup', () =>
      assertFails(getDoc(doc(w.alice, 'shareTokens/tok-alice'))));
    it('a signed-out client cannot resolve a share token through a lookup', () =>
      assertFails(getDoc(doc(w.anon, 'shareTokens/tok-alice'))));
    it('a user cannot read an unknown root collection', () => assertFails(getDocs(collection(w.alice, 'secrets'))));
    it('a user cannot write an unknown root collection', () => assertFails(setDoc(doc(w.alice, 'secrets/s1'), { a: 1 })));
    it('a signed-out client cannot write an unknown root collection', () =>
      assertFails(setDoc(doc(w.anon, 'public/p1'), { a: 1 })));
    it('an admin cannot read an unknown root collection', () => assertFails(getDoc(doc(w.admin, 'secrets/s1'))));
    it('an admin cannot write an unknown root collection', () => assertFails(setDoc(doc(w.admin, 'secrets/s1'), { a: 1 })));
    it('a new user cannot create a document under another user', () =>
      assertFails(setDoc(doc(w.newcomer, `users/${ALICE}/inbox/m1`), { text: 'hi' })));
    it('a new user cannot write into their own future subtree', () =>
      assertFails(setDoc(doc(w.newcomer, `users/${NEWCOMER}/apiKeys/k1`), { isActive: true })));
  });
});
