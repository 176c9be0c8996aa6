// users/{uid}: the owner reads; a client changes only name, profileImage and
// preferences; every other field is out of reach however it is written.

import { describe, it } from 'node:test';

import { assertFails, assertSucceeds } from '@firebase/rules-unit-testing';
import {
  collection,
  deleteDoc,
  deleteField,
  doc,
  getDoc,
  getDocs,
  query,
  runTransaction,
  setDoc,
  updateDoc,
  where,
  writeBatch,
} from 'firebase/firestore';

import { ADMIN, ALICE, BOB, CLAIMER, MEGABYTE, NEWCOMER, profile, useWorld, withField, withoutField } from './lib/world.mjs';

describe('users/{uid} (profiles)', () => {
  const w = useWorld('profile');
  const me = () => doc(w.alice, `users/${ALICE}`);

  describe('reads', () => {
    it('the owner gets their profile', () => assertSucceeds(getDoc(me())));
    it('another user cannot get it', () => assertFails(getDoc(doc(w.bob, `users/${ALICE}`))));
    it('a signed-out client cannot get it', () => assertFails(getDoc(doc(w.anon, `users/${ALICE}`))));
    it('an admin cannot get it (no client-side admin exception)', () =>
      assertFails(getDoc(doc(w.admin, `users/${ALICE}`))));
    it('a token claiming admin cannot get it', () => assertFails(getDoc(doc(w.claimer, `users/${ALICE}`))));
    it('the owner cannot list users', () => assertFails(getDocs(collection(w.alice, 'users'))));
    it('the owner cannot list users even filtered to themselves', () =>
      assertFails(getDocs(query(collection(w.alice, 'users'), where('userId', '==', ALICE)))));
    it('an admin cannot list users', () => assertFails(getDocs(collection(w.admin, 'users'))));
    it('a signed-out client cannot list users', () => assertFails(getDocs(collection(w.anon, 'users'))));
  });

  describe('creation (profiles are created by the service)', () => {
    it('a new user cannot create their profile', () =>
      assertFails(setDoc(doc(w.newcomer, `users/${NEWCOMER}`), profile(NEWCOMER))));
    it('a new user cannot create their profile with only benign fields', () =>
      assertFails(setDoc(doc(w.newcomer, `users/${NEWCOMER}`), { name: 'New' })));
    it('a new user cannot create an admin profile', () =>
      assertFails(setDoc(doc(w.newcomer, `users/${NEWCOMER}`), profile(NEWCOMER, 'admin'))));
    it('a new user cannot create their profile by merge-set', () =>
      assertFails(setDoc(doc(w.newcomer, `users/${NEWCOMER}`), { role: 'admin' }, { merge: true })));
    it('a user cannot create a profile for someone else', () =>
      assertFails(setDoc(doc(w.alice, `users/${NEWCOMER}`), profile(NEWCOMER))));
    it('an admin cannot create a profile', () =>
      assertFails(setDoc(doc(w.admin, `users/${NEWCOMER}`), profile(NEWCOMER))));
    it('a signed-out client cannot create a profile', () =>
      assertFails(setDoc(doc(w.anon, `users/${NEWCOMER}`), profile(NEWCOMER))));
  });

  describe('allowed changes by the owner', () => {
    it('name', () => assertSucceeds(updateDoc(me(), { name: 'Alice A.' })));
    it('name of 100 characters', () => assertSucceeds(updateDoc(me(), { name: 'n'.repeat(100) })));
    it('name of 100 non-BMP characters (lengths count characters)', () =>
      assertSucceeds(updateDoc(me(), { name: '😀'.repeat(100) })));
    it('profileImage to an https URL', () =>
      assertSucceeds(updateDoc(me(), { profileImage: 'https://cdn.example.com/a/b.png?s=64' })));
    it('profileImage to an http URL of 2048 characters', () =>
      assertSucceeds(updateDoc(me(), { profileImage: `http://example.com/${'p'.repeat(2048 - 19)}` })));
    it('profileImage to null', () => assertSucceeds(updateDoc(me(), { profileImage: null })));
    it('preferences.theme by field path', () => assertSucceeds(updateDoc(me(), { 'preferences.theme': 'dark' })));
    it('every preference at once', () =>
      assertSucceeds(
        updateDoc(me(), {
          preferences: { defaultPersona: 'p'.repeat(100), emailNotifications: false, analyticsOptOut: true, theme: 'light' },
        }),
      ));
    it('preferences.defaultPersona back to null', () =>
      assertSucceeds(updateDoc(me(), { 'preferences.defaultPersona': null })));
    it('preferences.emailNotifications and analyticsOptOut', () =>
      assertSucceeds(updateDoc(me(), { 'preferences.emailNotifications': false, 'preferences.analyticsOptOut': true })));
    it('name and preferences by merge-set', () =>
      assertSucceeds(setDoc(me(), { name: 'Alice', preferences: { theme: 'dark' } }, { merge: true })));
    it('a whole-document set that changes only allowed fields', () =>
      assertSucceeds(
        setDoc(me(), withField(withField(profile(ALICE), 'name', 'Renamed'), 'preferences.theme', 'light')),
      ));
    it('an update writing back unchanged protected values', () =>
      assertSucceeds(updateDoc(me(), { name: 'Alice', role: 'user', 'subscription.planType': 'free' })));
    it('in a transaction', () =>
      assertSucceeds(
        runTransaction(w.alice, async (tx) => {
          await tx.get(me());
          tx.update(me(), { name: 'Alice in a transaction' });
        }),
      ));
  });

  describe('invalid values of the allowed fields', () => {
    const denied = (title, data) => it(title, () => assertFails(updateDoc(me(), data)));
    denied('empty name', { name: '' });
    denied('name of 101 characters', { name: 'n'.repeat(101) });
    denied('name of 1 MB', { name: MEGABYTE });
    denied('name as a number', { name: 42 });
    denied('name as null', { name: null });
    denied('name as a map', { name: { first: 'A' } });
    denied('removing name', { name: deleteField() });
    denied('profileImage that is not a URL', { profileImage: 'not a url' });
    denied('profileImage with a javascript: URL', { profileImage: 'javascript:alert(1)' });
    denied('profileImage with a data: URL', { profileImage: 'data:image/png;base64,AAAA' });
    denied('profileImage as a number', { profileImage: 7 });
    denied('profileImage of 2049 characters', { profileImage: `http://example.com/${'p'.repeat(2049 - 19)}` });
    denied('profileImage of 1 MB', { profileImage: `https://example.com/${MEGABYTE}` });
    denied('removing profileImage', { profileImage: deleteField() });
    denied('theme outside dark/light/system', { 'preferences.theme': 'blue' });
    denied('theme as a number', { 'preferences.theme': 1 });
    denied('emailNotifications as a string', { 'preferences.emailNotifications': 'yes' });
    denied('analyticsOptOut as a number', { 'preferences.analyticsOptOut': 1 });
    denied('defaultPersona of 101 characters', { 'preferences.defaultPersona': 'p'.repeat(101) });
    denied('defaultPersona of 1 MB', { 'preferences.defaultPersona': MEGABYTE });
    denied('defaultPersona as a number', { 'preferences.defaultPersona': 3 });
    denied('an unknown preference', { 'preferences.isAdmin': true });
    denied('preferences with an unknown key', {
      preferences: { defaultPersona: null, emailNotifications: true, analyticsOptOut: false, theme: 'dark', plan: 'pro' },
    });
    denied('preferences as a string', { preferences: 'dark' });
    denied('preferences as null', { preferences: null });
    denied('removing preferences', { preferences: deleteField() });
    denied('an unknown top-level field', { nickname: 'al' });
    denied('an unknown top-level field of 1 MB', { bio: MEGABYTE });
  });

  describe('privilege escalation by the owner', () => {
    const denied = (title, data) => it(title, () => assertFails(updateDoc(me(), data)));
    denied('role to admin', { role: 'admin' });
    denied('role to admin next to a benign change', { name: 'Alice', role: 'admin' });
    denied('removing role', { role: deleteField() });
    denied('subscription.planType to enterprise', { 'subscription.planType': 'enterprise' });
    denied('subscription.analysisLimit to null (unlimited)', { 'subscription.analysisLimit': null });
    denied('subscription.copyLimit raised', { 'subscription.copyLimit': 100000 });
    denied('subscription.features changed', { 'subscription.features': ['all'] });
    denied('subscription replaced', { subscription: { planType: 'enterprise', status: 'active' } });
    denied('removing subscription', { subscription: deleteField() });
    denied('metadata.totalAnalyses reset', { 'metadata.totalAnalyses': 0 });
    denied('removing metadata', { metadata: deleteField() });
    denied('usage.analyses reset (quota)', { 'usage.analyses': 0 });
    denied('usage.copyGenerations reset (quota)', { 'usage.copyGenerations': 0 });
    denied('usage.period moved (quota)', { 'usage.period': '1999-01' });
    denied('removing usage', { usage: deleteField() });
    denied('usage replaced next to a benign change', { 'preferences.theme': 'dark', usage: { period: '2026-11', analyses: 0, copyGenerations: 0 } });
    denied('email changed', { email: 'ceo@example.com' });
    denied('removing email', { email: deleteField() });
    denied('userId changed', { userId: BOB });
    denied('createdAt changed', { createdAt: new Date() });
    denied('lastLoginAt changed', { lastLoginAt: new Date() });
    denied('authProvider changed', { authProvider: 'github' });
    denied('a quota field added at the top level', { analysisLimit: 1000000 });
    denied('credits added at the top level', { credits: 1000 });

    it('role to admin by merge-set', () => assertFails(setDoc(me(), { role: 'admin' }, { merge: true })));
    it('subscription by merge-set next to a benign change', () =>
      assertFails(setDoc(me(), { name: 'Alice', subscription: { planType: 'pro' } }, { merge: true })));
    it('a whole-document set with role admin', () => assertFails(setDoc(me(), profile(ALICE, 'admin'))));
    it('a whole-document set without role', () => assertFails(setDoc(me(), withoutField(profile(ALICE), 'role'))));
    it('a whole-document set without usage', () => assertFails(setDoc(me(), withoutField(profile(ALICE), 'usage'))));
    it('a whole-document set with only benign fields (drops everything else)', () =>
      assertFails(setDoc(me(), { name: 'Alice', profileImage: null })));
    it('a whole-document set with a larger plan', () =>
      assertFails(setDoc(me(), withField(profile(ALICE), 'subscription.planType', 'pro'))));
    it('a batch: a benign update, then role in a second update', () => {
      const batch = writeBatch(w.alice);
      batch.update(me(), { name: 'Alice' });
      batch.update(me(), { role: 'admin' });
      return assertFails(batch.commit());
    });
    it('a transaction setting role', () =>
      assertFails(
        runTransaction(w.alice, async (tx) => {
          await tx.get(me());
          tx.update(me(), { role: 'admin' });
        }),
      ));
    it('deleting the own profile (erasure goes through the service)', () => assertFails(deleteDoc(me())));
  });

  describe('other clients', () => {
    it('another user cannot change the name', () =>
      assertFails(updateDoc(doc(w.bob, `users/${ALICE}`), { name: 'pwned' })));
    it('a signed-out client cannot change the name', () =>
      assertFails(updateDoc(doc(w.anon, `users/${ALICE}`), { name: 'pwned' })));
    it('an admin cannot change the name', () => assertFails(updateDoc(doc(w.admin, `users/${ALICE}`), { name: 'x' })));
    it('an admin cannot change a role', () => assertFails(updateDoc(doc(w.admin, `users/${ALICE}`), { role: 'admin' })));
    it('an admin cannot change a plan', () =>
      assertFails(updateDoc(doc(w.admin, `users/${ALICE}`), { 'subscription.planType': 'enterprise' })));
    it('an admin cannot change their own plan', () =>
      assertFails(updateDoc(doc(w.admin, `users/${ADMIN}`), { 'subscription.planType': 'enterprise' })));
    it('an admin cannot demote themselves', () => assertFails(updateDoc(doc(w.admin, `users/${ADMIN}`), { role: 'user' })));
    it('an admin may change their own name like anyone', () =>
      assertSucceeds(updateDoc(doc(w.admin, `users/${ADMIN}`), { name: 'Ann' })));
    it('a token claiming admin cannot change its role', () =>
      assertFails(updateDoc(doc(w.claimer, `users/${CLAIMER}`), { role: 'admin' })));
    it('an admin cannot delete a profile', () => assertFails(deleteDoc(doc(w.admin, `users/${ALICE}`))));
    it('another user cannot delete a profile', () => assertFails(deleteDoc(doc(w.bob, `users/${ALICE}`))));
    it('a signed-out client cannot delete a profile', () => assertFails(deleteDoc(doc(w.anon, `users/${ALICE}`))));
  });
});
