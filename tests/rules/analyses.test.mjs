// users/{uid}/analyses/{id}: the owner reads (get and list); anyone may get a
// publicly shared one; nobody writes (the service holds quota, counters, tokens).

import { describe, it } from 'node:test';

import { assertFails, assertSucceeds } from '@firebase/rules-unit-testing';
import {
  collection,
  deleteDoc,
  doc,
  getDoc,
  getDocs,
  limit,
  orderBy,
  query,
  setDoc,
  updateDoc,
  where,
} from 'firebase/firestore';

import { ADMIN, ALICE, BOB, analysis, useWorld } from './lib/world.mjs';

describe('users/{uid}/analyses (analyses)', () => {
  const w = useWorld('analyses');
  const ref = (db, uid, id) => doc(db, `users/${uid}/analyses/${id}`);
  const col = (db, uid) => collection(db, `users/${uid}/analyses`);

  describe('the owner', () => {
    it('gets a private analysis', () => assertSucceeds(getDoc(ref(w.alice, ALICE, 'a-private'))));
    it('gets a public analysis', () => assertSucceeds(getDoc(ref(w.alice, ALICE, 'a-public'))));
    it('gets a missing analysis (nothing to see)', () => assertSucceeds(getDoc(ref(w.alice, ALICE, 'nope'))));
    it('lists their analyses', () => assertSucceeds(getDocs(col(w.alice, ALICE))));
    it('lists their history newest first, filtered', () =>
      assertSucceeds(
        getDocs(
          query(col(w.alice, ALICE), where('metadata.status', '==', 'completed'), orderBy('metadata.createdAt', 'desc'), limit(20)),
        ),
      ));
    it('cannot create an analysis', () => assertFails(setDoc(ref(w.alice, ALICE, 'new'), analysis(ALICE, 'new'))));
    it('cannot overwrite an analysis', () =>
      assertFails(setDoc(ref(w.alice, ALICE, 'a-private'), analysis(ALICE, 'a-private'))));
    it('cannot change its status', () =>
      assertFails(updateDoc(ref(w.alice, ALICE, 'a-private'), { 'metadata.status': 'failed' })));
    it('cannot change its results', () =>
      assertFails(updateDoc(ref(w.alice, ALICE, 'a-private'), { 'results.confidence': 1 })));
    it('cannot make it public', () =>
      assertFails(updateDoc(ref(w.alice, ALICE, 'a-private'), { 'sharing.isPublic': true })));
    it('cannot set a share token of their choosing', () =>
      assertFails(
        updateDoc(ref(w.alice, ALICE, 'a-private'), { sharing: { isPublic: true, shareToken: 'guessable', sharedAt: null } }),
      ));
    it('cannot revoke a share link directly', () =>
      assertFails(updateDoc(ref(w.alice, ALICE, 'a-public'), { 'sharing.isPublic': false, 'sharing.shareToken': null })));
    it('cannot delete an analysis', () => assertFails(deleteDoc(ref(w.alice, ALICE, 'a-private'))));
  });

  describe('another user', () => {
    it('cannot get a private analysis', () => assertFails(getDoc(ref(w.bob, ALICE, 'a-private'))));
    it('gets a public analysis', () => assertSucceeds(getDoc(ref(w.bob, ALICE, 'a-public'))));
    it('cannot list them', () => assertFails(getDocs(col(w.bob, ALICE))));
    it('cannot list only the public ones', () =>
      assertFails(getDocs(query(col(w.bob, ALICE), where('sharing.isPublic', '==', true)))));
    it('cannot create one for the owner', () => assertFails(setDoc(ref(w.bob, ALICE, 'new'), analysis(ALICE, 'new'))));
    it('cannot change a public one', () =>
      assertFails(updateDoc(ref(w.bob, ALICE, 'a-public'), { 'results.confidence': 0 })));
    it('cannot delete one', () => assertFails(deleteDoc(ref(w.bob, ALICE, 'a-private'))));
  });

  describe('a signed-out client', () => {
    it('gets a public analysis', () => assertSucceeds(getDoc(ref(w.anon, ALICE, 'a-public'))));
    it('gets another user\u2019s public analysis', () => assertSucceeds(getDoc(ref(w.anon, BOB, 'b-public'))));
    it('cannot get a private analysis', () => assertFails(getDoc(ref(w.anon, ALICE, 'a-private'))));
    it('cannot get a missing analysis', () => assertFails(getDoc(ref(w.anon, ALICE, 'nope'))));
    it('cannot list analyses', () => assertFails(getDocs(col(w.anon, ALICE))));
    it('cannot list the public ones', () =>
      assertFails(getDocs(query(col(w.anon, ALICE), where('sharing.isPublic', '==', true)))));
    it('cannot look one up by share token', () =>
      assertFails(getDocs(query(col(w.anon, ALICE), where('sharing.shareToken', '==', 'tok-alice-a-public-0123456789abcdef')))));
    it('cannot create one', () => assertFails(setDoc(ref(w.anon, ALICE, 'new'), analysis(ALICE, 'new'))));
    it('cannot change a public one', () =>
      assertFails(updateDoc(ref(w.anon, ALICE, 'a-public'), { 'input.persona': 'x' })));
    it('cannot delete a public one', () => assertFails(deleteDoc(ref(w.anon, ALICE, 'a-public'))));
  });

  describe('an admin (no client-side exception)', () => {
    it('cannot get another user\u2019s private analysis', () => assertFails(getDoc(ref(w.admin, ALICE, 'a-private'))));
    it('cannot list another user\u2019s analyses', () => assertFails(getDocs(col(w.admin, ALICE))));
    it('gets their own', () => assertSucceeds(getDoc(ref(w.admin, ADMIN, 'x-private'))));
    it('cannot create one for a user', () => assertFails(setDoc(ref(w.admin, ALICE, 'new'), analysis(ALICE, 'new'))));
    it('cannot create one of their own', () => assertFails(setDoc(ref(w.admin, ADMIN, 'new'), analysis(ADMIN, 'new'))));
    it('cannot change one', () => assertFails(updateDoc(ref(w.admin, ALICE, 'a-private'), { 'metadata.status': 'failed' })));
    it('cannot delete one', () => assertFails(deleteDoc(ref(w.admin, ALICE, 'a-private'))));
    it('a token claiming admin cannot get a private analysis', () =>
      assertFails(getDoc(ref(w.claimer, ALICE, 'a-private'))));
  });
});
