//! The scheduler's rules, checked on made-up slots and step costs (no model).

use super::*;

/// A 2-core CPU's costs: 10 ms for a decode step of one row, 2 ms more per row, 0.5 ms
/// a prompt token.
fn cpu_pace() -> Pace {
    let mut pace = Pace::default();
    for rows in 1..=8 {
        pace.observe(rows, 0, 10.0 + 2.0 * (rows as f64 - 1.0));
    }
    pace.observe(0, 100, 50.0);
    pace
}

fn limits<'a>(pace: &'a Pace, costs: &'a StepCosts, drafting: bool) -> StepLimits<'a> {
    StepLimits {
        n_batch: 512,
        drafting,
        min_draft: 0,
        pace,
        costs,
    }
}

fn idle(seq: i32) -> SlotState {
    SlotState { seq, work: Work::Idle }
}

fn replying(seq: i32, chances: &[f64]) -> SlotState {
    SlotState {
        seq,
        work: Work::Replying {
            chances: chances.to_vec(),
        },
    }
}

fn reading(seq: i32, left: usize, new: usize, arrival: u64) -> SlotState {
    SlotState {
        seq,
        work: Work::Reading { left, new, arrival },
    }
}

#[test]
fn nothing_to_do_is_an_empty_step() {
    let (pace, costs) = (cpu_pace(), StepCosts::default());
    let plan = plan_step(&[idle(0), idle(1)], &limits(&pace, &costs, true), 7);
    assert_eq!(plan.index, 7);
    assert!(plan.replying.is_empty() && plan.reads.is_empty() && plan.sampled.is_empty());
    assert_eq!(plan.decode_rows, 0);
}

#[test]
fn every_replying_sequence_gets_a_token_in_every_step_whatever_is_read() {
    let (pace, costs) = (cpu_pace(), StepCosts::default());
    let slots = [
        replying(0, &[]),
        reading(1, 3000, 3000, 1),
        replying(2, &[0.9]),
        reading(3, 20, 20, 2),
    ];
    let plan = plan_step(&slots, &limits(&pace, &costs, true), 0);
    assert_eq!(plan.replying, [0, 2]);
    assert_eq!(plan.decode_rows, 2, "no guess is verified while a prompt is read");
    assert!(!plan.drafting && plan.drafts.is_empty());
    assert!(plan.sampled.starts_with(&[0, 2]), "{plan:?}");
}

#[test]
fn a_question_beside_replies_is_read_whole_and_a_document_in_chunks_that_cost_under_a_decode_step() {
    let (pace, costs) = (cpu_pace(), StepCosts::default());
    let slots = [replying(0, &[]), reading(1, 3000, 3000, 1), replying(2, &[])];
    let plan = plan_step(&slots, &limits(&pace, &costs, true), 0);
    let read = plan.read_by(1);
    assert!(
        read >= crate::MIN_PROMPT_CHUNK && read <= plan.beside_budget,
        "{plan:?}"
    );
    let step = pace.decode_ms(2).expect("measured");
    let predicted = plan.predicted_ms.expect("predicted");
    assert!(
        predicted <= step * (1.0 + crate::DOCUMENT_CHUNK_DECODE_STEPS) + 1e-9,
        "{predicted} ms beside {step} ms decode steps"
    );
    assert!(!plan.sampled.contains(&1), "the document is not done: no token yet");

    let slots = [replying(0, &[]), reading(1, 40, 40, 1), replying(2, &[])];
    let plan = plan_step(&slots, &limits(&pace, &costs, true), 0);
    assert_eq!(plan.reads, [(1, 40)]);
    assert_eq!(
        plan.sampled,
        [0, 2, 1],
        "the question's first token comes from this step"
    );
}

#[test]
fn the_prompt_with_least_left_is_read_first_and_a_question_ends_in_a_step_of_its_own() {
    let (pace, costs) = (cpu_pace(), StepCosts::default());
    // Nothing replies: a question and a document, the document older.
    let slots = [reading(0, 2000, 2000, 1), reading(1, 30, 30, 2)];
    let plan = plan_step(&slots, &limits(&pace, &costs, true), 0);
    assert_eq!(
        plan.reads,
        [(1, 30)],
        "the question ends here; the document waits a step"
    );
    assert_eq!(plan.sampled, [1]);
    // Alone, the document is read in steps of the step budget.
    let plan = plan_step(&[reading(0, 2000, 2000, 1)], &limits(&pace, &costs, true), 1);
    assert_eq!(plan.reads, [(0, plan.step_budget)]);
    assert!(plan.step_budget >= 500, "about half a second of prompt: {plan:?}");
    // Equal prompts: the older first.
    let slots = [reading(0, 30, 30, 9), reading(1, 30, 30, 3)];
    let plan = plan_step(&slots, &limits(&pace, &costs, true), 2);
    assert_eq!(plan.reads, [(1, 30), (0, 30)]);
}

#[test]
fn the_batch_is_never_overfilled() {
    let (pace, costs) = (cpu_pace(), StepCosts::default());
    let limits = StepLimits {
        n_batch: 16,
        ..limits(&pace, &costs, true)
    };
    let slots = [replying(0, &[]), replying(1, &[]), reading(2, 500, 500, 1)];
    let plan = plan_step(&slots, &limits, 0);
    assert!(plan.decode_rows + plan.prompt_tokens() <= 16, "{plan:?}");
}

#[test]
fn a_lone_reply_verifies_a_sure_guess_and_not_a_doubtful_one() {
    let (pace, costs) = (cpu_pace(), StepCosts::default());
    let plan = plan_step(&[replying(0, &[0.98; 8]), idle(1)], &limits(&pace, &costs, true), 0);
    assert!(plan.drafting);
    assert_eq!(plan.drafts, [(0, 8)]);
    assert_eq!(plan.decode_rows, 9);
    let plan = plan_step(&[replying(0, &[0.02, 0.01])], &limits(&pace, &costs, true), 0);
    assert!(plan.drafting, "still checked against what is sampled, for free");
    assert_eq!(plan.drafts, [(0, 0)]);
    // Drafting off: nothing is verified, however sure.
    let plan = plan_step(&[replying(0, &[0.98; 8])], &limits(&pace, &costs, false), 0);
    assert!(!plan.drafting && plan.drafts.is_empty());
    assert_eq!(plan.decode_rows, 1);
}

#[test]
fn replies_beside_each_other_verify_guesses_only_in_one_run_where_the_costs_pay() {
    let (pace, costs) = (cpu_pace(), StepCosts::default());
    let copies = [replying(0, &[0.98; 8]), replying(1, &[0.98; 8])];
    let plan = plan_step(&copies, &limits(&pace, &costs, true), 0);
    assert!(plan.drafting);
    let k = plan.drafts[0].1;
    assert!(k > 0 && plan.drafts == [(0, k), (1, k)], "{plan:?}");
    assert_eq!(plan.decode_rows, 2 + 2 * k);
    // The same two sequences apart (0 and 2): two passes over the weights already.
    let apart = [replying(0, &[0.98; 8]), idle(1), replying(2, &[0.98; 8])];
    let plan = plan_step(&apart, &limits(&pace, &costs, true), 0);
    assert_eq!(plan.drafts, [(0, 0), (2, 0)]);
    // Chat replies on a CPU: their doubtful guesses are not worth the rows.
    let chats = [replying(0, &[0.3, 0.1]), replying(1, &[0.3, 0.1])];
    let plan = plan_step(&chats, &limits(&pace, &costs, true), 0);
    assert_eq!(plan.drafts, [(0, 0), (1, 0)]);
}

fn view(busy: bool, cached: usize, common: usize, last_used: u64) -> SlotView {
    SlotView {
        busy,
        cached,
        common,
        last_used,
    }
}

#[test]
fn a_conversation_comes_back_to_the_slot_that_holds_it() {
    let slots = [view(false, 100, 10, 1), view(false, 300, 290, 2), view(false, 0, 0, 0)];
    assert_eq!(choose_slot(&slots), Some(1));
}

#[test]
fn an_empty_slot_is_taken_before_one_holding_another_conversation() {
    // Slot 0 shares a system prompt (40 of 400 tokens); slot 1 is empty.
    let slots = [view(false, 400, 40, 1), view(false, 0, 0, 0)];
    assert_eq!(choose_slot(&slots), Some(1));
}

#[test]
fn busy_slots_stay_in_few_runs_then_the_least_recently_used_is_taken() {
    // 0 and 1 busy: slot 2 joins their run, slot 3 would start a second one.
    let slots = [
        view(true, 0, 0, 0),
        view(true, 0, 0, 0),
        view(false, 0, 0, 5),
        view(false, 0, 0, 1),
    ];
    assert_eq!(choose_slot(&slots), Some(2));
    let slots = [view(false, 0, 0, 5), view(false, 0, 0, 1), view(false, 0, 0, 3)];
    assert_eq!(choose_slot(&slots), Some(1));
    assert_eq!(choose_slot(&[view(false, 0, 0, 0), view(false, 0, 0, 0)]), Some(0));
}

#[test]
fn no_idle_slot_is_no_choice() {
    assert_eq!(choose_slot(&[view(true, 0, 0, 0), view(true, 5, 5, 1)]), None);
    assert_eq!(choose_slot(&[]), None);
}

#[test]
fn a_newcomer_is_counted_in_the_runs_it_joins_or_starts() {
    let busy = [true, true, false, false, true, false];
    assert_eq!(runs_with(&busy, 2), 2);
    assert_eq!(runs_with(&busy, 3), 2);
    assert_eq!(runs_with(&busy, 5), 2);
    assert_eq!(runs_with(&[true, false, true], 1), 1);
    assert_eq!(runs_with(&[false, false, false], 1), 1);
}

#[test]
fn min_draft_verifies_guesses_whatever_the_costs_say() {
    let (pace, costs) = (cpu_pace(), StepCosts::default());
    let forced = |min_draft| StepLimits {
        min_draft,
        ..limits(&pace, &costs, true)
    };
    // A doubtful lone guess, which the costs would not verify, is verified as far as
    // it reaches.
    let doubtful = [replying(0, &[0.02, 0.01])];
    assert_eq!(plan_step(&doubtful, &forced(4), 0).drafts, [(0, 2)]);
    assert_eq!(plan_step(&doubtful, &forced(1), 0).drafts, [(0, 1)]);
    // A sure guess still goes as far as it pays.
    assert_eq!(plan_step(&[replying(0, &[0.98; 8])], &forced(2), 0).drafts, [(0, 8)]);
    // Beside each other: the same number for each, up to the shortest guess.
    let chats = [replying(0, &[0.3, 0.1, 0.05]), replying(1, &[0.2, 0.1])];
    let plan = plan_step(&chats, &forced(3), 0);
    assert_eq!(plan.drafts, [(0, 2), (1, 2)], "{plan:?}");
    assert_eq!(plan.decode_rows, 6);
    // Still never when one has no guess, when they are not one run, or while a prompt
    // is read.
    let one_without = [replying(0, &[0.3, 0.1]), replying(1, &[])];
    assert_eq!(plan_step(&one_without, &forced(3), 0).drafts, [(0, 0), (1, 0)]);
    let apart = [replying(0, &[0.3, 0.1]), idle(1), replying(2, &[0.3, 0.1])];
    assert_eq!(plan_step(&apart, &forced(3), 0).drafts, [(0, 0), (2, 0)]);
    let reading_too = [replying(0, &[0.3, 0.1]), reading(1, 50, 50, 1)];
    assert!(plan_step(&reading_too, &forced(3), 0).drafts.is_empty());
    // The batch's room bounds it: 2 rows and 2 guesses each in 6.
    let small = StepLimits {
        n_batch: 6,
        ..forced(8)
    };
    let copies = [replying(0, &[0.3; 8]), replying(1, &[0.3; 8])];
    assert_eq!(plan_step(&copies, &small, 0).drafts, [(0, 2), (1, 2)]);
}

#[test]
fn a_single_slot_reads_its_prompt_in_whole_batches_and_several_in_bounded_steps() {
    let (pace, costs) = (cpu_pace(), StepCosts::default());
    // 0.5 ms a token: a step of at most 500 ms holds about 1,000 tokens; make the
    // batch bigger so the step bound shows.
    let wide = StepLimits {
        n_batch: 2048,
        ..limits(&pace, &costs, false)
    };
    let plan = plan_step(&[reading(0, 3000, 3000, 1)], &wide, 0);
    assert_eq!(plan.reads, [(0, 2048)], "nobody can wait behind a lone slot: {plan:?}");
    let plan = plan_step(&[reading(0, 3000, 3000, 1), idle(1)], &wide, 0);
    let read = plan.read_by(0);
    assert!(
        read < 2048 && read == plan.step_budget,
        "a newcomer would wait behind it: {plan:?}"
    );
}
