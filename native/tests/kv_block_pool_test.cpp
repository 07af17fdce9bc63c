// KvBlockPool's sharing: reference counts, release freeing only at zero,
// copy-on-write (a shared block written gets a private copy; a writable one
// is left alone), physical accounting of used_bytes (shared blocks once),
// budget exhaustion with shared blocks, bad ids as Status, and the
// deterministic order in which freed blocks come back.
#include <vector>

#include "engine/kv_block_pool.h"
#include "test_harness.h"

using namespace rex;

REX_TEST(allocate_gives_one_reference_and_release_frees) {
  KvBlockPool pool(4, 16, 10);
  auto a = pool.allocate(20);
  CHECK(a.ok());
  CHECK_EQ(a->size(), size_t(2));
  CHECK_EQ(pool.ref_count((a.value())[0]), 1);
  CHECK(pool.writable((a.value())[1]));
  CHECK_EQ(pool.ref_count(3), 0);
  CHECK_EQ(pool.ref_count(-1), 0);
  CHECK_EQ(pool.ref_count(99), 0);
  pool.release(&a.value());
  CHECK_EQ(pool.free_blocks(), 4);
  CHECK_EQ(pool.stray_releases(), 0);
}

REX_TEST(shared_blocks_are_freed_by_the_last_release) {
  KvBlockPool pool(4, 16, 10);
  auto a = pool.allocate(32);
  CHECK(a.ok());
  std::vector<int32_t> reader = a.value();
  CHECK(pool.share(reader).ok());
  CHECK_EQ(pool.ref_count(reader[0]), 2);
  CHECK(!pool.writable(reader[0]));
  CHECK_EQ(pool.held_blocks(), 2);
  CHECK_EQ(pool.used_bytes(), size_t(2 * 16 * 10));  // physical: shared blocks once
  pool.release(&a.value());
  CHECK_EQ(pool.free_blocks(), 2);  // the reader still holds them
  CHECK(pool.writable(reader[0]));
  pool.release(&reader);
  CHECK_EQ(pool.free_blocks(), 4);
  CHECK_EQ(pool.used_bytes(), size_t(0));
}

REX_TEST(copy_on_write_copies_only_shared_blocks) {
  KvBlockPool pool(4, 16, 10);
  auto a = pool.allocate(32);  // blocks 0, 1
  CHECK(a.ok());
  auto same = pool.copy_on_write(&a.value(), 1);
  CHECK(same.ok());
  CHECK(!same->needs_copy());
  CHECK_EQ(same->from, 1);
  CHECK_EQ(pool.free_blocks(), 2);

  std::vector<int32_t> b = a.value();
  CHECK(pool.share(b).ok());
  auto copy = pool.copy_on_write(&b, 1);
  CHECK(copy.ok());
  CHECK(copy->needs_copy());
  CHECK_EQ(copy->from, 1);
  CHECK_EQ(copy->to, 2);  // the top of the free stack
  CHECK_EQ(b[1], 2);
  CHECK_EQ(b[0], 0);
  CHECK_EQ(pool.ref_count(1), 1);  // a alone now
  CHECK_EQ(pool.ref_count(2), 1);
  CHECK_EQ(pool.ref_count(0), 2);
  CHECK_EQ(pool.held_blocks(), 3);
  pool.release(&a.value());
  pool.release(&b);
  CHECK_EQ(pool.used_bytes(), size_t(0));
}

REX_TEST(copy_on_write_without_a_free_block_is_out_of_memory) {
  KvBlockPool pool(2, 16, 1 << 20);
  auto a = pool.allocate(32);
  CHECK(a.ok());
  std::vector<int32_t> b = a.value();
  CHECK(pool.share(b).ok());
  CHECK_EQ(pool.free_blocks(), 0);
  auto more = pool.allocate(1);
  CHECK(!more.ok());
  CHECK(more.status().code() == StatusCode::kOutOfMemory);
  auto cow = pool.copy_on_write(&b, 0);
  CHECK(!cow.ok());
  CHECK(cow.status().code() == StatusCode::kOutOfMemory);
  CHECK_CONTAINS(cow.status().message(), "copy-on-write of shared block 0 needs one free KV block");
  CHECK_CONTAINS(cow.status().message(), "but got none");
  CHECK_EQ(b[0], 0);  // unchanged
  CHECK_EQ(pool.ref_count(0), 2);
  // The budget counts physical blocks: two tables of 2 blocks fill a pool of 2.
  CHECK(pool.check(1).verdict == Admission::kLater);
  pool.release(&b);
  CHECK(pool.check(32).verdict == Admission::kLater);  // a still holds both
  pool.release(&a.value());
  CHECK(pool.check(32).verdict == Admission::kNow);
}

REX_TEST(bad_ids_are_errors_and_change_nothing) {
  KvBlockPool pool(4, 16, 10);
  auto a = pool.allocate(16);  // block 0
  CHECK(a.ok());
  Status s = pool.share({0, 3});
  CHECK(s.code() == StatusCode::kInvalidArgument);
  CHECK_CONTAINS(s.message(), "expected every shared block to be a held block but got block 3, which is free");
  CHECK_EQ(pool.ref_count(0), 1);  // not half-shared
  Status range = pool.share({7});
  CHECK_CONTAINS(range.message(), "expected every shared block to be a block id in [0, 4) but got 7");
  auto bad_index = pool.copy_on_write(&a.value(), 1);
  CHECK(bad_index.status().code() == StatusCode::kInvalidArgument);
  CHECK_CONTAINS(bad_index.status().message(), "expected a copy-on-write index in [0, 1) but got 1");
  std::vector<int32_t> freed = {2};
  auto free_block = pool.copy_on_write(&freed, 0);
  CHECK_CONTAINS(free_block.status().message(), "block 2, which is free");
  std::vector<int32_t> stray = {2, 9};
  pool.release(&stray);
  CHECK_EQ(pool.stray_releases(), 2);
  CHECK_EQ(pool.free_blocks(), 3);  // nothing pushed twice
  pool.release(&a.value());
  CHECK_EQ(pool.free_blocks(), 4);
}

REX_TEST(free_order_is_deterministic) {
  KvBlockPool pool(6, 16, 10);
  auto a = pool.allocate(48);  // 0 1 2
  auto b = pool.allocate(32);  // 3 4
  CHECK(a.ok() && b.ok());
  CHECK((a.value() == std::vector<int32_t>{0, 1, 2}));
  CHECK((b.value() == std::vector<int32_t>{3, 4}));
  std::vector<int32_t> a_table = a.value();
  pool.release(&a.value());
  auto again = pool.allocate(48);  // the same ids in the same order
  CHECK(again.ok());
  CHECK((again.value() == a_table));
  // Shared blocks: only those reaching zero return, in table order.
  std::vector<int32_t> reader = {again->at(0), again->at(2)};
  CHECK(pool.share(reader).ok());
  pool.release(&again.value());  // frees block 1 only
  auto one = pool.allocate(32);  // 1, then 5
  CHECK(one.ok());
  CHECK((one.value() == std::vector<int32_t>{1, 5}));
  pool.release(&reader);
  pool.release(&one.value());
  pool.release(&b.value());
  CHECK_EQ(pool.free_blocks(), 6);
  auto all = pool.allocate(96);
  CHECK(all.ok());
  CHECK((all.value() == std::vector<int32_t>{3, 4, 1, 5, 0, 2}));  // last released first
}
