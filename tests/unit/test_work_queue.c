// The broker's work-queue rules, driven directly: dedupe, capacity, even
// spreading, done/nack, and requeue when a worker dies.
#include "testsupport.h"

#include "work_queue.h"

#include <stdio.h>
#include <string.h>

static const uint8_t payload[] = "item";

static void s_submit(work_queue_t *wq, const char *id)
{
    assert_int_equal(work_queue_submit(wq, "q", id, payload, sizeof payload),
                     WORK_SUBMIT_ACCEPTED);
}

static void test_duplicates_and_limit(void **state)
{
    (void)state;
    work_queue_t *wq = work_queue_new(2);
    s_submit(wq, "a");
    assert_int_equal(work_queue_submit(wq, "q", "a", payload, 4), WORK_SUBMIT_DUPLICATE);
    s_submit(wq, "b");
    assert_int_equal(work_queue_submit(wq, "q", "c", payload, 4), WORK_SUBMIT_FULL);
    // Another queue has its own limit.
    assert_int_equal(work_queue_submit(wq, "other", "c", payload, 4), WORK_SUBMIT_ACCEPTED);
    work_queue_stats_t st;
    assert_true(work_queue_stats(wq, "q", &st));
    assert_int_equal(st.waiting, 2);
    assert_false(work_queue_stats(wq, "never", &st));
    work_queue_destroy(&wq);
    work_queue_destroy(&wq);
}

static void test_nothing_without_workers_then_fifo(void **state)
{
    (void)state;
    work_queue_t *wq = work_queue_new(100);
    s_submit(wq, "1");
    s_submit(wq, "2");
    const char *worker;
    work_item_view_t item;
    assert_false(work_queue_next(wq, &worker, &item));
    assert_false(work_queue_worker_ready(wq, "w1", "q", 5, 0, 0)); // new worker
    assert_true(work_queue_worker_ready(wq, "w1", "q", 5, 0, 0));  // known now
    assert_true(work_queue_next(wq, &worker, &item));
    assert_string_equal(item.item_id, "1");
    assert_int_equal(item.attempt, 1);
    assert_memory_equal(item.payload, payload, sizeof payload);
    assert_true(work_queue_next(wq, &worker, &item));
    assert_string_equal(item.item_id, "2");
    assert_false(work_queue_next(wq, &worker, &item));
    // In flight, an id is still a duplicate.
    assert_int_equal(work_queue_submit(wq, "q", "1", payload, 4), WORK_SUBMIT_DUPLICATE);
    assert_true(work_queue_done(wq, "w1", "1"));
    assert_false(work_queue_done(wq, "w1", "1"));  // late duplicate ack
    assert_false(work_queue_done(wq, "w2", "2"));  // not that worker's
    // Done, the id may be submitted again.
    s_submit(wq, "1");
    work_queue_destroy(&wq);
}

static void test_capacity_and_reported_holdings(void **state)
{
    (void)state;
    work_queue_t *wq = work_queue_new(100);
    for (int i = 0; i < 10; i++) {
        char id[8];
        snprintf(id, sizeof id, "%d", i);
        s_submit(wq, id);
    }
    // A worker that already holds 2 of 3 (the broker restarted) gets one.
    work_queue_worker_ready(wq, "w", "q", 3, 2, 0);
    const char *worker;
    work_item_view_t item;
    int sent = 0;
    while (work_queue_next(wq, &worker, &item))
        sent++;
    assert_int_equal(sent, 1);
    // It reports holding none now: two more fit beside the one in flight.
    work_queue_worker_ready(wq, "w", "q", 3, 0, 0);
    while (work_queue_next(wq, &worker, &item))
        sent++;
    assert_int_equal(sent, 3);
    work_queue_destroy(&wq);
}

static void test_spreads_evenly(void **state)
{
    (void)state;
    work_queue_t *wq = work_queue_new(1000);
    work_queue_worker_ready(wq, "a", "q", 100, 0, 0);
    work_queue_worker_ready(wq, "b", "q", 100, 0, 0);
    work_queue_worker_ready(wq, "c", "q", 100, 0, 0);
    int count[3] = {0};
    for (int i = 0; i < 300; i++) {
        char id[8];
        snprintf(id, sizeof id, "%d", i);
        s_submit(wq, id);
        const char *worker;
        work_item_view_t item;
        assert_true(work_queue_next(wq, &worker, &item));
        count[worker[0] - 'a']++;
        assert_true(work_queue_done(wq, worker, item.item_id));
    }
    assert_int_equal(count[0], 100);
    assert_int_equal(count[1], 100);
    assert_int_equal(count[2], 100);
    work_queue_destroy(&wq);
}

static void test_dead_worker_items_go_first_to_another(void **state)
{
    (void)state;
    work_queue_t *wq = work_queue_new(100);
    s_submit(wq, "x");
    s_submit(wq, "y");
    work_queue_worker_ready(wq, "dies", "q", 1, 0, 0);
    const char *worker;
    work_item_view_t item;
    assert_true(work_queue_next(wq, &worker, &item));
    assert_string_equal(item.item_id, "x");
    work_queue_worker_ready(wq, "lives", "q", 5, 0, 2000);
    assert_true(work_queue_next(wq, &worker, &item));
    assert_string_equal(worker, "lives");
    assert_string_equal(item.item_id, "y");
    size_t dead = 0;
    assert_int_equal(work_queue_expire(wq, 3500, 3000, &dead), 1);
    assert_int_equal(dead, 1);
    assert_true(work_queue_next(wq, &worker, &item));
    assert_string_equal(worker, "lives");
    assert_string_equal(item.item_id, "x");
    assert_int_equal(item.attempt, 2);
    assert_false(work_queue_done(wq, "dies", "x")); // the dead one's late ack is ignored
    assert_true(work_queue_done(wq, "lives", "x"));
    work_queue_destroy(&wq);
}

static void test_nack_requeues_front(void **state)
{
    (void)state;
    work_queue_t *wq = work_queue_new(100);
    s_submit(wq, "first");
    s_submit(wq, "second");
    work_queue_worker_ready(wq, "w", "q", 1, 0, 0);
    const char *worker;
    work_item_view_t item;
    assert_true(work_queue_next(wq, &worker, &item));
    assert_true(work_queue_nack(wq, "w", "first", true)); // "no room": not an attempt
    assert_false(work_queue_next(wq, &worker, &item)); // full until its next READY
    work_queue_worker_ready(wq, "w", "q", 1, 0, 0);
    assert_true(work_queue_next(wq, &worker, &item));
    assert_string_equal(item.item_id, "first");
    assert_int_equal(item.attempt, 1);
    assert_true(work_queue_nack(wq, "w", "first", false)); // a failed attempt
    assert_true(work_queue_next(wq, &worker, &item));
    assert_int_equal(item.attempt, 2);
    work_queue_destroy(&wq);
}

static void test_names(void **state)
{
    (void)state;
    work_queue_t *wq = work_queue_new(10);
    work_queue_submit(wq, "one", "1", payload, 1);
    work_queue_worker_ready(wq, "w", "two", 1, 0, 0);
    const char *names[4];
    assert_int_equal(work_queue_names(wq, names, 4), 2);
    work_queue_destroy(&wq);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duplicates_and_limit),
        cmocka_unit_test(test_nothing_without_workers_then_fifo),
        cmocka_unit_test(test_capacity_and_reported_holdings),
        cmocka_unit_test(test_spreads_evenly),
        cmocka_unit_test(test_dead_worker_items_go_first_to_another),
        cmocka_unit_test(test_nack_requeues_front),
        cmocka_unit_test(test_names),
    };
    return TS_RUN(tests);
}
