//! The conformance suite: every semantic of the kasync API, written once and
//! run against a runtime built by each adapter's `builder()` function.
//!
//! Each adapter's test file does `mod suite; suite::conformance!(builder);`.

#![allow(dead_code)]

pub mod foreign;
pub mod gate;
pub mod growth;
pub mod hands;
pub mod items;
pub mod model;
pub mod progress;
pub mod promises;
pub mod promises_two;
pub mod shutdown;
pub mod tasks;

/// Instantiates every conformance test for an adapter. `$builder` is a
/// `fn() -> kasync::Builder` that selects the adapter.
macro_rules! conformance {
    ($builder:path) => {
        $crate::suite::conformance!(@tests $builder;
            model::cookies_are_nonzero_and_increase_across_domains,
            model::call_receives_its_own_cookie,
            model::context_inside_and_outside_calls,
            model::exclusive_domain_is_not_covered_by_synchronize_full,
            model::registered_domains_are_covered_by_synchronize_full,
            model::unregistered_domain_is_no_longer_covered,
            model::synchronize_cookie_waits_only_for_earlier_calls,
            model::synchronize_waits_for_calls_scheduled_while_waiting,
            model::wait_timeout_times_out_and_calls_keep_running,
            model::barrier_is_a_future,
            model::only_satisfied_waiters_are_woken,
            model::dispatch_is_lowest_cookie_first,
            model::panics_are_reported_and_do_not_poison,
            model::panic_is_reported_by_every_waiting_barrier_once,
            model::panic_before_any_barrier_is_not_lost,
            model::waiting_on_own_call_would_deadlock,
            model::a_nested_self_wait_names_the_innermost_call,
            model::waiting_inside_async_call_on_own_domain_would_deadlock,
            model::try_schedule_gives_the_function_back_when_full,
            model::reject_policy_panics_with_a_clear_message,
            model::run_inline_policy_runs_on_the_caller_with_a_cookie,
            model::block_policy_makes_room_by_helping,
            model::async_calls_run_and_count_as_calls,
            model::async_call_panics_are_reported,
            model::stats_count_what_happened,
            model::builder_rejects_bad_settings,
            model::timeline_records_blocking_and_async_calls,
            model::waiting_across_runtimes_works_and_a_cross_runtime_self_wait_is_refused,
            growth::nested_parents_and_children_finish_with_one_worker,
            growth::nested_parents_and_children_finish_with_two_workers,
            growth::ten_thousand_predecessor_waits_with_one_worker,
            growth::cross_domain_chains_finish_with_a_small_cap,
            growth::invisible_blocking_is_resolved_by_the_watchdog,
            growth::invisible_blocking_after_short_calls_wakes_an_idle_worker,
            growth::huge_backlog_is_drained_by_helping_without_overflow,
            growth::cap_is_never_exceeded_and_idle_workers_shrink,
            growth::helping_respects_help_depth,
            growth::wait_no_help_never_runs_calls_on_the_waiter,
            growth::blocked_worker_is_compensated,
            growth::stress_random_waits,
            growth::burst_onto_idle_workers_leaves_no_call_behind,
            growth::extreme_durations_mean_forever_not_a_panic,
            growth::no_eager_workers_still_runs_calls,
            growth::short_calls_run_once_in_order,
            growth::helping_elsewhere_does_not_hide_a_stalled_worker,
            growth::block_policy_inside_a_call_runs_inline_instead_of_deadlocking,
            model::panics_of_a_dropped_exclusive_domain_do_not_haunt_new_domains,
            items::panicking_drop_of_a_detached_item_does_not_break_the_pool,
            items::try_submit_gives_the_item_back_when_full,
            items::a_barrier_waiting_when_an_item_panics_leaves_it_to_the_handle,
            items::submit_and_wait_give_the_same_box_back,
            items::items_share_cookies_domains_and_barriers_with_closures,
            items::panicking_item_comes_back_with_the_panic,
            items::dropped_handle_detaches_and_frees_once,
            items::detached_items_are_freed_once_before_the_barrier_returns,
            items::scoped_items_have_finished_when_scope_returns,
            items::items_follow_the_growth_rule_with_one_worker,
            shutdown::dropping_the_runtime_runs_every_pending_call,
            shutdown::shutdown_reports_success_and_workers_leave,
            shutdown::shutdown_timeout_gives_up_without_cancelling,
            shutdown::shutdown_inside_an_own_call_is_refused,
            shutdown::shutdown_timeout_runs_no_call_itself,
            shutdown::last_handle_dropped_on_an_own_thread_does_not_hang,
            shutdown::shutdown_does_not_wait_for_a_long_watchdog_tick,
            foreign::a_barrier_polled_then_waited_drops_its_waker_outside_the_lock,
            foreign::an_item_polled_then_waited_drops_its_waker_outside_the_lock,
            foreign::an_observed_item_wait_outlives_its_domain,
            promises::a_barrier_over_returned_calls_does_not_wait_for_a_later_call,
            promises::a_wait_on_returned_calls_does_not_wait_for_the_call_it_feeds,
            promises::a_scope_after_short_calls_finishes_without_helping,
            promises::a_blocking_wait_inside_block_on_helps_an_async_call,
            promises::a_blocking_wait_inside_an_async_call_helps_an_async_call,
            promises::a_call_handed_to_a_parked_helper_survives_unregister,
            promises::a_call_handed_to_a_helper_that_unregister_satisfies_still_runs,
            promises::a_satisfied_barrier_is_not_terminated_before_its_first_poll,
            promises::would_deadlock_drops_the_earlier_waker_outside_the_lock,
            promises::await_inside_an_async_call_does_not_hold_back_a_queued_call,
            promises::a_panic_payload_whose_drop_panics_is_reported,
            promises::an_async_call_whose_panic_payload_drop_panics_is_reported,
            promises::an_async_call_whose_future_drop_panics_is_contained,
            promises::eager_workers_zero_without_a_watchdog_is_refused,
            promises::panicking_drop_of_an_item_whose_handle_was_dropped_is_reported,
            tasks::spawn_returns_values_and_takes_the_next_cookie,
            tasks::a_spawned_call_is_covered_by_barriers,
            tasks::wait_runs_the_task_on_the_waiter_when_no_worker_is_free,
            tasks::spawn_async_returns_values,
            tasks::the_global_runtime_spawns,
            tasks::a_task_panic_is_delivered_to_its_task_once,
            tasks::a_detached_tasks_panic_is_reported_by_a_barrier,
            tasks::cancel_before_start_never_runs_and_drops_the_closure_once,
            tasks::cancel_after_start_or_finish_returns_false,
            tasks::domain_cancel_cancels_every_queued_call_of_the_domain,
            tasks::cancelled_calls_free_a_cookie_chain,
            tasks::wait_timeout_times_out_and_the_task_stays_waitable,
            tasks::dropping_a_task_detaches_it,
            tasks::a_task_polled_as_a_future_then_waited,
            tasks::waiting_on_a_task_from_inside_its_own_call_would_deadlock,
            tasks::a_blocking_task_wait_inside_an_async_call,
            tasks::map_ordered_keeps_input_order_under_random_delays,
            tasks::map_ordered_bounds_inputs_pulled_and_calls_running,
            tasks::map_ordered_yields_panics_in_place,
            tasks::map_ordered_makes_progress_with_one_worker,
            tasks::map_ordered_stream_and_iterator_give_the_same_results,
            tasks::dropping_an_ordered_map_early_cancels_the_rest,
            tasks::map_ordered_with_window_zero_panics_clearly,
            tasks::map_ordered_with_window_one_and_a_huge_window,
            tasks::map_ordered_slow_head_finishes_with_few_workers,
            tasks::a_barrier_over_a_cancelled_detached_item_returns_after_the_free,
            tasks::domain_cancel_leaves_a_scopes_items_to_run,
            tasks::map_ordered_next_where_blocking_is_not_allowed_panics_clearly,
            hands::scoped_calls_borrow_shared_and_disjoint_mut,
            hands::a_scope_returns_after_every_call_ended_waited_or_not,
            hands::a_scope_runs_its_queued_calls_on_the_waiting_thread,
            hands::an_unwaited_scoped_panic_is_reraised_after_every_call_ended,
            hands::a_waited_scoped_panic_is_the_handles_only,
            hands::items_and_calls_mix_in_one_scope_and_are_never_cancelled,
            hands::a_task_set_joins_in_completion_order,
            hands::a_task_set_joiner_runs_a_member_when_none_runs,
            hands::a_task_set_joiner_leaves_queued_members_to_workers_while_one_runs,
            hands::a_task_set_cancels_and_still_joins,
            hands::a_member_joining_its_own_set_is_refused,
            hands::an_async_call_awaiting_a_set_finishes_with_one_worker,
            hands::a_task_set_delivers_a_panic_once,
            hands::a_task_set_is_awaited_in_completion_order,
            hands::dropping_a_task_set_cancels_its_queued_calls,
            hands::map_unordered_yields_in_completion_order_within_its_window,
            hands::map_unordered_next_keeps_its_window,
            hands::map_unordered_stream_and_errors,
            hands::every_result_goes_through_question_mark,
            hands::a_timed_out_wait_consumes_nothing_on_every_handle,
            hands::a_refused_wait_keeps_the_value,
            progress::computing_workers_get_no_company_even_beside_hogs,
            progress::judged_by_time_computing_workers_grow_the_pool,
            progress::a_burst_of_blocked_calls_gets_a_thread_each,
            progress::invisible_blocking_is_found_judged_by_time,
            progress::a_mixed_stream_grows_for_its_blocked_calls,
            promises_two::task_cancel_dropping_the_last_runtime_does_not_hang,
            promises_two::domain_cancel_dropping_the_last_runtime_does_not_hang,
            promises_two::a_cancelled_detached_item_dropping_the_last_runtime_does_not_hang,
            promises_two::a_cancelled_closure_waiting_on_its_domain_in_drop_is_refused,
            promises_two::a_panic_dropping_a_cancelled_closure_is_reported,
            promises_two::parents_waiting_on_their_children_finish_with_one_worker,
            promises_two::parents_waiting_on_their_items_finish_with_one_worker,
            promises_two::a_nested_map_ordered_on_its_own_domain_finishes_with_one_worker,
            promises_two::a_task_wait_does_not_stack_unrelated_calls,
            promises_two::a_task_panic_taken_by_its_task_is_not_reported_by_an_earlier_made_barrier,
            promises_two::a_task_panic_goes_to_its_task_not_to_barriers,
            promises_two::a_panic_left_in_a_dropped_handle_is_reported_by_barriers,
            promises_two::a_helped_async_call_awaiting_a_queued_call_does_not_trap_its_helper,
            promises_two::a_helped_async_call_awaiting_a_queued_task_does_not_trap_its_helper,
            promises_two::waiting_on_an_items_own_handle_would_deadlock,
            promises_two::awaiting_an_async_tasks_own_handle_would_deadlock,
            promises_two::a_cancelled_closure_joining_an_earlier_cancelled_task_does_not_hang,
            promises_two::a_cancelled_closure_joining_a_later_cancelled_task_settles_it,
            promises_two::cancelled_closures_syncing_on_their_own_cookie_in_drop_do_not_hang,
            promises_two::a_scopes_second_panic_goes_to_barriers,
            promises_two::a_scoped_items_panic_is_not_lost_when_the_scope_closure_panics,
        );
    };
    (@tests $builder:path; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::suite::$module::$name(&$builder);
            }
        )*
    };
}
pub(crate) use conformance;

/// What the suite needs from an adapter: a builder with its executor set.
pub type MakeBuilder = dyn Fn() -> kasync::Builder;
