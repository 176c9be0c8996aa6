//! `funnelflow seed`: realistic development data, written through the domain
//! services (sign-in provisioning, persona and analysis creation, completion,
//! sharing) so every counter and quota is what the service itself would have
//! made. The same `--seed` chooses the same data: users, plans, personas,
//! analysis inputs, statuses, results and copy. Ids the services mint
//! (analyses, personas, share tokens) and timestamps are those of the run, as
//! in production.

use anyhow::Context;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use validator::Validate;

use crate::domain::analyses::{
    AnalysisInput, Completion, Finding, InputType, NewAnalysis, Results, SampleCopy, Status,
};
use crate::domain::personas::{Behavior, Characteristics, Demographics, NewPersona, Psychographics};
use crate::domain::users::{self, AuthProvider, PlanType, SignIn, Subscription};
use crate::domain::versioned::IfMatch;
use crate::state::AppState;
use crate::store::{Fields, Write, value};

#[derive(Debug, Clone)]
pub struct Spec {
    pub users: u32,
    pub analyses_per_user: u32,
    pub seed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub users: u32,
    /// Free, pro, enterprise.
    pub plans: [u32; 3],
    pub analyses: u32,
    pub shared: u32,
    pub personas: u32,
    /// Existing users left alone.
    pub skipped: u32,
}

const FIRST: &[&str] = &[
    "Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Radia", "Edsger", "Frances",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Torvalds", "Hamilton", "Turing", "Liskov", "Thompson", "Perlman",
];
const BUILT_IN: &[&str] = &["Founder", "Marketer", "Developer", "Enterprise Buyer", "Student"];
const OFFERS: &[&str] = &[
    "An online course that teaches busy founders to validate ideas in two weeks",
    "A project-management app for small agencies with client portals and invoicing",
    "A newsletter about practical machine learning for product teams",
    "A meal-kit subscription for families with dietary restrictions",
];
const CATEGORIES: &[&str] = &[
    "headline",
    "offer",
    "social proof",
    "call to action",
    "pricing",
    "urgency",
];
const MODELS: &[&str] = &["gpt-4o", "claude-3-5-sonnet", "gemini-1.5-pro"];

/// The uid of the `i`-th seeded user.
pub fn uid(i: u32) -> String {
    format!("seed-user-{:04}", i + 1)
}

/// The smallest plan whose monthly quota holds `analyses` (with sample copy on some of them).
fn plan_for(rng: &mut StdRng, analyses: u32) -> PlanType {
    let wanted = *[
        PlanType::Free,
        PlanType::Free,
        PlanType::Pro,
        PlanType::Enterprise,
    ]
    .choose(rng)
    .unwrap_or(&PlanType::Free);
    let fits = |p: PlanType| p.limits().0.is_none_or(|limit| analyses <= limit);
    [wanted, PlanType::Pro, PlanType::Enterprise]
        .into_iter()
        .find(|p| fits(*p) && *p as u8 >= wanted as u8)
        .unwrap_or(PlanType::Enterprise)
}

/// Seeds users `0..spec.users`. A user whose profile exists already is left
/// as it is (counted in `skipped`): running seed again adds only missing users.
pub async fn run(state: &AppState, spec: &Spec) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let bar = super::progress("seed", Some(u64::from(spec.users)));
    for i in 0..spec.users {
        if state.users.get(&uid(i)).await?.is_some() {
            report.skipped += 1;
            bar.inc(1);
            continue;
        }
        // One generator per user: each user's data depends on the seed and
        // its number only, whatever else exists.
        let mut rng = StdRng::seed_from_u64(spec.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(i));
        seed_user(state, &mut rng, i, spec.analyses_per_user, &mut report)
            .await
            .with_context(|| format!("seeding {}", uid(i)))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(report)
}

async fn seed_user(
    state: &AppState,
    rng: &mut StdRng,
    i: u32,
    analyses: u32,
    report: &mut Report,
) -> anyhow::Result<()> {
    let uid = uid(i);
    let (first, last) = (
        FIRST.choose(rng).unwrap_or(&"Ada"),
        LAST.choose(rng).unwrap_or(&"Lovelace"),
    );
    let provider = *[
        AuthProvider::Google,
        AuthProvider::Github,
        AuthProvider::Microsoft,
    ]
    .choose(rng)
    .unwrap_or(&AuthProvider::Google);
    let sign_in = SignIn {
        uid: uid.clone(),
        email: Some(format!(
            "{}.{}{}@example.com",
            first.to_lowercase(),
            last.to_lowercase(),
            i + 1
        )),
        name: Some(format!("{first} {last}")),
        picture: None,
        provider,
        auth_time: jiff::Timestamp::now().as_second(),
    };
    state.users.profile_for(&sign_in, None).await?;

    // The plan: what an admin's subscription change writes (the subscription map).
    let plan = plan_for(rng, analyses);
    let mut subscription = Subscription::new(plan, firestore::FirestoreTimestamp(value::now()));
    if plan != PlanType::Free {
        subscription.features = vec!["sample-copy".into(), "personas".into()];
    }
    let mut fields = Fields::new();
    fields.insert("subscription".into(), value::from_serialize(&subscription));
    state
        .store
        .commit(vec![Write::update(
            users::Users::path(&uid)?,
            fields,
            vec!["subscription".into()],
        )])
        .await?;
    state.users.invalidate(&uid).await;
    report.plans[plan as usize] += 1;

    let mut personas = Vec::new();
    for p in 0..rng.random_range(0..=3u32) {
        let new = NewPersona {
            name: format!("{} #{}", BUILT_IN.choose(rng).unwrap_or(&"Founder"), p + 1),
            description: format!(
                "A {} persona seeded for development.",
                ["cautious", "curious", "busy"][p as usize % 3]
            ),
            characteristics: Characteristics {
                demographics: Demographics {
                    age_range: Some(
                        ["25-34", "35-44", "45-54"]
                            .choose(rng)
                            .unwrap_or(&"25-34")
                            .to_string(),
                    ),
                    occupation: Some("Product manager".into()),
                    income: None,
                },
                psychographics: Psychographics {
                    values: vec!["time".into(), "clarity".into()],
                    interests: vec!["growth".into()],
                    challenges: vec!["too many tools".into()],
                },
                behavior: Behavior {
                    decision_making: Some("data-driven".into()),
                    media_consumption: vec!["podcasts".into()],
                    purchasing_triggers: vec!["free trial".into()],
                },
            },
            is_default: Some(p == 0 && rng.random_bool(0.5)),
        };
        new.validate().context("a seeded persona is invalid")?;
        personas.push(state.personas.create(&uid, new, None).await?.item.persona_id);
        report.personas += 1;
    }

    // Sample copy counts against the copy quota too: only where the plan allows it.
    let copy_limit = plan.limits().1;
    let mut copies = 0u32;
    for _ in 0..analyses {
        let custom = (!personas.is_empty() && rng.random_bool(0.4))
            .then(|| personas.choose(rng).cloned())
            .flatten();
        let status = *[
            Status::Completed,
            Status::Completed,
            Status::Completed,
            Status::Processing,
            Status::Failed,
        ]
        .choose(rng)
        .unwrap_or(&Status::Completed);
        let with_copy = rng.random_bool(0.5) && copy_limit.is_none_or(|l| copies < l);
        let results = results(rng, with_copy);
        let link = rng.random_bool(0.5);
        let new = NewAnalysis {
            input: AnalysisInput {
                offer_details: if link {
                    format!("https://example.com/offers/{}", rng.random_range(1..1000))
                } else {
                    (*OFFERS.choose(rng).unwrap_or(&OFFERS[0])).to_owned()
                },
                input_type: if link { InputType::Link } else { InputType::Text },
                persona: (*BUILT_IN.choose(rng).unwrap_or(&"Founder")).to_owned(),
                custom_persona_id: custom,
            },
            // Some are created processing and completed afterwards, as the web app does.
            status: if status == Status::Completed && rng.random_bool(0.3) {
                Status::Processing
            } else {
                status
            },
            results: None,
            ai_model: (*MODELS.choose(rng).unwrap_or(&MODELS[0])).to_owned(),
            version: "1.0".into(),
            request_id: uuid::Builder::from_random_bytes(rng.random())
                .into_uuid()
                .to_string(),
        };
        let complete_later = new.status != status;
        let new = NewAnalysis {
            results: (new.status == Status::Completed).then(|| results.clone()),
            ..new
        };
        new.validate().context("a seeded analysis is invalid")?;
        let created = state.analyses.create(&uid, new, None).await?.item;
        if complete_later {
            let c = Completion {
                status: Status::Completed,
                results: Some(results),
            };
            state
                .analyses
                .complete(&uid, &created.analysis_id, c, IfMatch::Absent)
                .await?;
        }
        if status == Status::Completed && with_copy {
            copies += 1;
        }
        if status == Status::Completed && rng.random_bool(0.15) {
            state.analyses.share(&uid, &created.analysis_id).await?;
            report.shared += 1;
        }
        report.analyses += 1;
    }
    report.users += 1;
    Ok(())
}

fn results(rng: &mut StdRng, with_copy: bool) -> Results {
    let findings = (0..rng.random_range(1..=4))
        .map(|_| {
            let category = *CATEGORIES.choose(rng).unwrap_or(&"offer");
            Finding {
                category: category.to_owned(),
                score: f64::from(rng.random_range(20..=100u32)) / 10.0,
                finding: format!("The {category} could be clearer for this audience."),
                recommendation: format!("Rewrite the {category} around one concrete outcome."),
            }
        })
        .collect();
    Results {
        analysis: findings,
        sample_copy: with_copy.then(|| SampleCopy {
            headline: "Ship your idea in two weeks".into(),
            body: "A step-by-step program that turns a hunch into paying customers.".into(),
            call_to_action: "Start free".into(),
        }),
        confidence: f64::from(rng.random_range(50..=99u32)) / 100.0,
        processing_time_ms: f64::from(rng.random_range(800..=9000u32)),
    }
}
