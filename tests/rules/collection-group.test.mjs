// Collection-group queries: a user may query their own analyses and personas
// (filtered on userId), never other users' documents, never API keys.

import { describe, it } from 'node:test';

import { assertFails, assertSucceeds } from '@firebase/rules-unit-testing';
import { collectionGroup, getDocs, orderBy, query, where } from 'firebase/firestore';

import { ALICE, BOB, useWorld } from './lib/world.mjs';

describe('collection-group queries', () => {
  const w = useWorld('collection-group');
  const group = (db, name, ...constraints) => getDocs(query(collectionGroup(db, name), ...constraints));

  describe('analyses', () => {
    it('a user queries their own', () => assertSucceeds(group(w.alice, 'analyses', where('userId', '==', ALICE))));
    it('a user queries their own, newest first', () =>
      assertSucceeds(group(w.alice, 'analyses', where('userId', '==', ALICE), orderBy('metadata.createdAt', 'desc'))));
    it('a user cannot query everyone\u2019s', () => assertFails(group(w.alice, 'analyses')));
    it('a user cannot query another user\u2019s', () => assertFails(group(w.alice, 'analyses', where('userId', '==', BOB))));
    it('a user cannot query several users\u2019', () =>
      assertFails(group(w.alice, 'analyses', where('userId', 'in', [ALICE, BOB]))));
    it('a user cannot query every public analysis', () =>
      assertFails(group(w.alice, 'analyses', where('sharing.isPublic', '==', true))));
    it('a user cannot look up a share token', () =>
      assertFails(group(w.alice, 'analyses', where('sharing.shareToken', '==', `tok-${BOB}-b-public-0123456789abcdef`))));
    it('a signed-out client cannot query every public analysis', () =>
      assertFails(group(w.anon, 'analyses', where('sharing.isPublic', '==', true))));
    it('a signed-out client cannot look up a share token', () =>
      assertFails(group(w.anon, 'analyses', where('sharing.shareToken', '==', `tok-${ALICE}-a-public-0123456789abcdef`))));
    it('an admin cannot query everyone\u2019s', () => assertFails(group(w.admin, 'analyses')));
    it('an admin cannot query a user\u2019s', () => assertFails(group(w.admin, 'analyses', where('userId', '==', ALICE))));
  });

  describe('personas', () => {
    it('a user queries their own', () => assertSucceeds(group(w.alice, 'personas', where('userId', '==', ALICE))));
    it('a user cannot query everyone\u2019s', () => assertFails(group(w.alice, 'personas')));
    it('a user cannot query another user\u2019s', () => assertFails(group(w.alice, 'personas', where('userId', '==', BOB))));
    it('a user cannot query the most used personas of all users', () =>
      assertFails(group(w.alice, 'personas', orderBy('metadata.usageCount', 'desc'))));
    it('a signed-out client cannot query them', () => assertFails(group(w.anon, 'personas')));
    it('an admin cannot query everyone\u2019s', () => assertFails(group(w.admin, 'personas')));
  });

  describe('API keys and the rest of the subtree', () => {
    it('a user cannot query everyone\u2019s API keys', () => assertFails(group(w.alice, 'apiKeys')));
    it('a user cannot query active API keys', () => assertFails(group(w.alice, 'apiKeys', where('isActive', '==', true))));
    it('a user cannot find a key by its prefix', () =>
      assertFails(group(w.alice, 'apiKeys', where('prefix', '==', 'ffk_kbob'))));
    it('a signed-out client cannot query API keys', () => assertFails(group(w.anon, 'apiKeys')));
    it('an admin cannot query API keys', () => assertFails(group(w.admin, 'apiKeys')));
    it('a user cannot query idempotency records', () => assertFails(group(w.alice, 'idempotency')));
    it('a user cannot query usage counters', () => assertFails(group(w.bob, 'usageCounters')));
  });
});
