//! The indexed, sliced decision must equal plain Cedar's answer over the whole
//! policy set and entity store: same effect, same determining policies, same
//! errors, same hold for approval and tags. Checked on randomized corpora and
//! requests; a failure prints the seed.

use mandate_policy::PolicyBundle;
use mandate_testkit::{Corpus, CorpusShape, Rng};

#[test]
fn indexed_decisions_equal_full_cedar_decisions_on_random_requests() {
    let mut checked = 0;
    let mut allows = 0;
    let mut with_errors = 0;
    let mut holds = 0;
    let mut tagged = 0;
    for seed in 0..12u64 {
        let corpus = Corpus::generate(
            seed,
            CorpusShape {
                policies: 20 + (seed as usize * 7),
                users: 30,
            },
        );
        let bundle = PolicyBundle::from_sources(&corpus.sources).expect("corpus loads");
        let mut rng = Rng::new(seed ^ 0xA5A5);
        for i in 0..400 {
            let request = corpus.request(&mut rng);
            let fast = bundle.decide(request.clone());
            let full = bundle.decide_unindexed(request.clone());
            assert_eq!(
                fast,
                full,
                "seed {seed}, request {i}: {request:?}\nindexed candidates: {:?}",
                bundle.candidate_ids(&request)
            );
            checked += 1;
            allows += usize::from(fast.is_allow());
            with_errors += usize::from(!fast.errors.is_empty());
            holds += usize::from(fast.needs_approval());
            tagged += usize::from(!fast.tags.is_empty());
        }
    }
    // The corpus must exercise both outcomes and erroring policies, or the
    // comparison proves little.
    assert_eq!(checked, 4800);
    assert!(allows > 300 && allows < 4500, "allows: {allows}");
    assert!(
        with_errors > 100,
        "requests with policy errors: {with_errors}"
    );
    assert!(holds > 200, "holds: {holds}");
    assert!(tagged > 700, "tagged decisions: {tagged}");
}

#[test]
fn the_index_actually_narrows_the_policy_set() {
    let corpus = Corpus::generate(
        7,
        CorpusShape {
            policies: 100,
            users: 50,
        },
    );
    let bundle = PolicyBundle::from_sources(&corpus.sources).unwrap();
    let mut rng = Rng::new(1);
    let mut total = 0;
    for _ in 0..200 {
        total += bundle.candidate_ids(&corpus.request(&mut rng)).len();
    }
    let average = total as f64 / 200.0;
    assert!(average < 60.0, "average candidates {average} of 100");
}
