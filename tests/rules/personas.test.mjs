// users/{uid}/personas/{id}: the owner creates, changes and deletes them in the
// stored shape (API.md); the usage counters in metadata stay the service's.

import { describe, it } from 'node:test';

import { assertFails, assertSucceeds } from '@firebase/rules-unit-testing';
import {
  Timestamp,
  collection,
  deleteDoc,
  deleteField,
  doc,
  getDoc,
  getDocs,
  increment,
  orderBy,
  query,
  serverTimestamp,
  setDoc,
  updateDoc,
  writeBatch,
} from 'firebase/firestore';

import {
  ADMIN,
  ALICE,
  BOB,
  MEGABYTE,
  T1,
  maximalPersona,
  newPersona,
  storedPersona,
  useWorld,
  withField,
  withoutField,
} from './lib/world.mjs';

describe('users/{uid}/personas (personas)', () => {
  const w = useWorld('personas');
  const ref = (db, uid, id) => doc(db, `users/${uid}/personas/${id}`);
  const col = (db, uid) => collection(db, `users/${uid}/personas`);
  const create = (data, id = 'p-new') => setDoc(ref(w.alice, ALICE, id), data);
  const valid = () => newPersona(ALICE, 'p-new');
  const mine = () => ref(w.alice, ALICE, 'p-alice');

  describe('reads', () => {
    it('the owner gets one', () => assertSucceeds(getDoc(mine())));
    it('the owner lists them', () => assertSucceeds(getDocs(col(w.alice, ALICE))));
    it('the owner lists them most used first', () =>
      assertSucceeds(getDocs(query(col(w.alice, ALICE), orderBy('metadata.usageCount', 'desc'), orderBy('metadata.createdAt', 'desc')))));
    it('another user cannot get one', () => assertFails(getDoc(ref(w.bob, ALICE, 'p-alice'))));
    it('another user cannot list them', () => assertFails(getDocs(col(w.bob, ALICE))));
    it('a signed-out client cannot get one', () => assertFails(getDoc(ref(w.anon, ALICE, 'p-alice'))));
    it('a signed-out client cannot list them', () => assertFails(getDocs(col(w.anon, ALICE))));
    it('an admin cannot get one', () => assertFails(getDoc(ref(w.admin, ALICE, 'p-alice'))));
    it('an admin cannot list them', () => assertFails(getDocs(col(w.admin, ALICE))));
  });

  describe('valid creates by the owner', () => {
    it('a persona in the stored shape', () => assertSucceeds(create(valid())));
    it('the maximal persona (every list 20 items of 200 characters, every string at its bound)', () =>
      assertSucceeds(create(maximalPersona(ALICE, 'p-new'))));
    it('a maximal persona of non-BMP characters (lengths count characters)', () => {
      const p = maximalPersona(ALICE, 'p-new');
      p.name = '😀'.repeat(100);
      p.characteristics.psychographics.values = Array.from({ length: 20 }, () => '😀'.repeat(200));
      return assertSucceeds(create(p));
    });
    it('with client timestamps instead of server ones', () =>
      assertSucceeds(create(withField(withField(valid(), 'metadata.createdAt', T1), 'metadata.updatedAt', T1))));
    it('without lastUsedAt', () => assertSucceeds(create(withoutField(valid(), 'metadata.lastUsedAt'))));
    it('as the default persona', () => assertSucceeds(create(withField(valid(), 'metadata.isDefault', true))));
    it('with empty characteristics', () => assertSucceeds(create(withField(valid(), 'characteristics', {}))));
    it('with empty parts and null strings', () =>
      assertSucceeds(
        create(
          withField(valid(), 'characteristics', {
            demographics: { ageRange: null, occupation: null, income: null },
            psychographics: { values: [], interests: [], challenges: [] },
            behavior: { decisionMaking: null, mediaConsumption: [], purchasingTriggers: [] },
          }),
        ),
      ));
    it('with empty list items', () => assertSucceeds(create(withField(valid(), 'characteristics.psychographics.values', ['', 'a', '']))));
    it('in a batch of two', () => {
      const batch = writeBatch(w.alice);
      batch.set(ref(w.alice, ALICE, 'p-1'), newPersona(ALICE, 'p-1'));
      batch.set(ref(w.alice, ALICE, 'p-2'), newPersona(ALICE, 'p-2'));
      return assertSucceeds(batch.commit());
    });
  });

  describe('creates by others', () => {
    it('another user cannot create one for the owner', () =>
      assertFails(setDoc(ref(w.bob, ALICE, 'p-new'), valid())));
    it('another user cannot create one for the owner under their own userId', () =>
      assertFails(setDoc(ref(w.bob, ALICE, 'p-new'), newPersona(BOB, 'p-new'))));
    it('a signed-out client cannot create one', () => assertFails(setDoc(ref(w.anon, ALICE, 'p-new'), valid())));
    it('an admin cannot create one for a user', () => assertFails(setDoc(ref(w.admin, ALICE, 'p-new'), valid())));
    it('an admin creates their own like anyone', () =>
      assertSucceeds(setDoc(ref(w.admin, ADMIN, 'p-new'), newPersona(ADMIN, 'p-new'))));
  });

  describe('invalid creates by the owner', () => {
    const denied = (title, data) => it(title, () => assertFails(create(data)));
    denied('userId of another user', withField(valid(), 'userId', BOB));
    denied('personaId other than the document id', withField(valid(), 'personaId', 'p-other'));
    denied('without personaId', withoutField(valid(), 'personaId'));
    denied('without userId', withoutField(valid(), 'userId'));
    denied('without name', withoutField(valid(), 'name'));
    denied('without description', withoutField(valid(), 'description'));
    denied('without characteristics', withoutField(valid(), 'characteristics'));
    denied('without metadata', withoutField(valid(), 'metadata'));
    denied('empty name', withField(valid(), 'name', ''));
    denied('name of 101 characters', withField(valid(), 'name', 'n'.repeat(101)));
    denied('name of 1 MB', withField(valid(), 'name', MEGABYTE));
    denied('name as a number', withField(valid(), 'name', 5));
    denied('name as null', withField(valid(), 'name', null));
    denied('description of 9 characters', withField(valid(), 'description', 'd'.repeat(9)));
    denied('description of 501 characters', withField(valid(), 'description', 'd'.repeat(501)));
    denied('description of 1 MB', withField(valid(), 'description', MEGABYTE));
    denied('description as a list', withField(valid(), 'description', ['ten chars long']));
    denied('an unknown top-level key', withField(valid(), 'isAdmin', true));
    denied('isDefault at the top level (it lives in metadata)', withField(valid(), 'isDefault', true));
    denied('an unknown top-level key of 1 MB', withField(valid(), 'notes', MEGABYTE));
    denied('an unknown key in characteristics', withField(valid(), 'characteristics.secret', {}));
    denied('an unknown key in demographics', withField(valid(), 'characteristics.demographics.gender', 'x'));
    denied('an unknown key in psychographics', withField(valid(), 'characteristics.psychographics.fears', []));
    denied('an unknown key in behavior', withField(valid(), 'characteristics.behavior.channel', 'x'));
    denied('an unknown key in metadata', withField(valid(), 'metadata.ownerOverride', true));
    denied('characteristics as a string', withField(valid(), 'characteristics', 'rich'));
    denied('demographics as a list', withField(valid(), 'characteristics.demographics', ['30-45']));
    denied('psychographics as a string', withField(valid(), 'characteristics.psychographics', 'x'));
    denied('behavior as null', withField(valid(), 'characteristics.behavior', null));
    denied('ageRange of 201 characters', withField(valid(), 'characteristics.demographics.ageRange', 'a'.repeat(201)));
    denied('occupation of 1 MB', withField(valid(), 'characteristics.demographics.occupation', MEGABYTE));
    denied('income as a number', withField(valid(), 'characteristics.demographics.income', 100000));
    denied('decisionMaking as a map', withField(valid(), 'characteristics.behavior.decisionMaking', { a: 'b' }));
    denied('decisionMaking of 201 characters', withField(valid(), 'characteristics.behavior.decisionMaking', 'd'.repeat(201)));
    denied('values with 21 items', withField(valid(), 'characteristics.psychographics.values', Array(21).fill('v')));
    denied('interests with an item of 201 characters', withField(valid(), 'characteristics.psychographics.interests', ['ok', 'i'.repeat(201)]));
    denied('challenges with an item of 1 MB', withField(valid(), 'characteristics.psychographics.challenges', [MEGABYTE]));
    denied('mediaConsumption with a number item', withField(valid(), 'characteristics.behavior.mediaConsumption', ['tv', 7]));
    denied('mediaConsumption with a string of digits and a number', withField(valid(), 'characteristics.behavior.mediaConsumption', ['1', 1]));
    denied('purchasingTriggers with a null item', withField(valid(), 'characteristics.behavior.purchasingTriggers', [null]));
    denied('purchasingTriggers with a boolean item', withField(valid(), 'characteristics.behavior.purchasingTriggers', [true]));
    denied('values with a map item', withField(valid(), 'characteristics.psychographics.values', [{ v: 'x' }]));
    denied('values as a string', withField(valid(), 'characteristics.psychographics.values', 'time'));
    denied('values as a map', withField(valid(), 'characteristics.psychographics.values', { 0: 'time' }));
    denied('the maximal persona with a 21st item', (() => {
      const p = maximalPersona(ALICE, 'p-new');
      p.characteristics.behavior.purchasingTriggers.push('p');
      return p;
    })());
    denied('the maximal persona with one item of 201 characters', (() => {
      const p = maximalPersona(ALICE, 'p-new');
      p.characteristics.psychographics.challenges[19] += 'c';
      return p;
    })());
  });

  describe('metadata on create (the counters start at zero)', () => {
    const denied = (title, data) => it(title, () => assertFails(create(data)));
    denied('usageCount above zero', withField(valid(), 'metadata.usageCount', 5));
    denied('usageCount negative', withField(valid(), 'metadata.usageCount', -1));
    denied('usageCount as a string', withField(valid(), 'metadata.usageCount', '0'));
    denied('usageCount as a fraction', withField(valid(), 'metadata.usageCount', 0.5));
    denied('without usageCount', withoutField(valid(), 'metadata.usageCount'));
    denied('lastUsedAt set', withField(valid(), 'metadata.lastUsedAt', T1));
    denied('isDefault as a string', withField(valid(), 'metadata.isDefault', 'true'));
    denied('without isDefault', withoutField(valid(), 'metadata.isDefault'));
    denied('createdAt as a string', withField(valid(), 'metadata.createdAt', '2026-11-01T10:00:00Z'));
    denied('without createdAt', withoutField(valid(), 'metadata.createdAt'));
    denied('updatedAt as a number', withField(valid(), 'metadata.updatedAt', 1700000000));
    denied('metadata as a list', withField(valid(), 'metadata', [false]));
  });

  describe('updates', () => {
    const allowed = (title, data) => it(title, () => assertSucceeds(updateDoc(mine(), data)));
    const denied = (title, data) => it(title, () => assertFails(updateDoc(mine(), data)));
    allowed('the owner renames a persona the service wrote', { name: 'Renamed', 'metadata.updatedAt': serverTimestamp() });
    allowed('the owner changes the description', { description: 'A longer description of them.' });
    allowed('the owner replaces psychographics with the maximal lists', {
      'characteristics.psychographics': maximalPersona(ALICE, 'x').characteristics.psychographics,
    });
    allowed('the owner replaces behavior', {
      'characteristics.behavior': { decisionMaking: null, mediaConsumption: [], purchasingTriggers: ['demo'] },
    });
    allowed('the owner makes it the default', { 'metadata.isDefault': true, 'metadata.updatedAt': serverTimestamp() });
    allowed('the owner writes back unchanged counters', { 'metadata.usageCount': 3, 'metadata.lastUsedAt': T1, name: 'Same counters' });
    it('the owner overwrites it whole, counters unchanged', () =>
      assertSucceeds(setDoc(mine(), withField(storedPersona(ALICE, 'p-alice'), 'name', 'Whole'))));
    it('the owner merge-sets a new name', () => assertSucceeds(setDoc(mine(), { name: 'Merged' }, { merge: true })));

    denied('usageCount raised', { 'metadata.usageCount': 1000 });
    denied('usageCount incremented', { 'metadata.usageCount': increment(1) });
    denied('usageCount reset next to a benign change', { name: 'Reset', 'metadata.usageCount': 0 });
    denied('lastUsedAt moved', { 'metadata.lastUsedAt': serverTimestamp() });
    denied('lastUsedAt cleared', { 'metadata.lastUsedAt': null });
    denied('usageCount removed', { 'metadata.usageCount': deleteField() });
    denied('lastUsedAt removed', { 'metadata.lastUsedAt': deleteField() });
    denied('createdAt changed', { 'metadata.createdAt': Timestamp.now() });
    denied('metadata replaced with fresh counters', {
      metadata: { isDefault: false, createdAt: T1, updatedAt: T1, usageCount: 0, lastUsedAt: null },
    });
    denied('metadata removed', { metadata: deleteField() });
    denied('an unknown key in metadata', { 'metadata.boost': 10 });
    denied('isDefault as a string', { 'metadata.isDefault': 'yes' });
    denied('updatedAt as a string', { 'metadata.updatedAt': 'now' });
    denied('personaId changed', { personaId: 'p-other' });
    denied('userId changed', { userId: BOB });
    denied('an unknown top-level key', { shared: true });
    denied('name of 101 characters', { name: 'n'.repeat(101) });
    denied('name of 1 MB', { name: MEGABYTE });
    denied('name removed', { name: deleteField() });
    denied('description too short', { description: 'short' });
    denied('values with 21 items', { 'characteristics.psychographics.values': Array(21).fill('v') });
    denied('an item of 1 MB', { 'characteristics.behavior.mediaConsumption': [MEGABYTE] });
    denied('a number item', { 'characteristics.behavior.mediaConsumption': [1] });
    denied('an unknown key in demographics', { 'characteristics.demographics.secret': 'x' });
    it('the owner overwrites it whole with fresh counters', () =>
      assertFails(setDoc(mine(), withField(storedPersona(ALICE, 'p-alice'), 'metadata.usageCount', 0))));
    it('the owner overwrites it whole without lastUsedAt', () =>
      assertFails(setDoc(mine(), withoutField(storedPersona(ALICE, 'p-alice'), 'metadata.lastUsedAt'))));
    it('another user cannot change it', () => assertFails(updateDoc(ref(w.bob, ALICE, 'p-alice'), { name: 'x' })));
    it('a signed-out client cannot change it', () => assertFails(updateDoc(ref(w.anon, ALICE, 'p-alice'), { name: 'x' })));
    it('an admin cannot change it', () => assertFails(updateDoc(ref(w.admin, ALICE, 'p-alice'), { name: 'x' })));
    it('an admin cannot move its counters', () =>
      assertFails(updateDoc(ref(w.admin, ALICE, 'p-alice'), { 'metadata.usageCount': 0 })));
  });

  describe('deletes', () => {
    it('the owner deletes one', () => assertSucceeds(deleteDoc(mine())));
    it('another user cannot delete one', () => assertFails(deleteDoc(ref(w.bob, ALICE, 'p-alice'))));
    it('a signed-out client cannot delete one', () => assertFails(deleteDoc(ref(w.anon, ALICE, 'p-alice'))));
    it('an admin cannot delete one', () => assertFails(deleteDoc(ref(w.admin, ALICE, 'p-alice'))));
  });
});
