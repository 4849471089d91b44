//! The conversation as its one owner keeps it: each turn returns the ids it wrote, a
//! regenerate and an edit rewind the store and the messages the next reply sees alike,
//! the title is written once, and a deleted conversation starts afresh.
#![allow(clippy::unwrap_used)]

mod common;

use common::{history, manager, roles};
use hearth_core::{Role, SamplingParams};
use hearth_manager::{BackendKind, BackendManager, ManagerError, Settings, StopSignal, TurnReport};
use hearth_store::{MessageId, LOCAL_USER};

fn embedded_only() -> Settings {
    Settings {
        active: BackendKind::Embedded,
        ..Settings::default()
    }
}

async fn send(manager: &BackendManager, text: &str) -> TurnReport {
    manager
        .send(text, SamplingParams::greedy(16), &StopSignal::default(), |_| {})
        .await
        .expect("a reply")
}

#[tokio::test]
async fn a_turn_returns_the_ids_of_what_it_wrote() {
    let f = manager(embedded_only()).await;
    let turn = send(&f.manager, "hello").await;
    let stored = history(&f.manager).await;
    assert_eq!(roles(&stored), [Role::User, Role::Assistant]);
    assert_eq!(turn.user_message, Some(stored[0].id));
    assert_eq!(turn.message, Some(stored[1].id));
    assert_eq!(stored[1].content, turn.text);
    // What the next reply sees is what is stored.
    let seen: Vec<(Role, String)> = f
        .manager
        .conversation()
        .messages()
        .into_iter()
        .map(|m| (m.role, m.content))
        .collect();
    let saved: Vec<(Role, String)> = stored.into_iter().map(|m| (m.role, m.content)).collect();
    assert_eq!(seen, saved);
}

#[tokio::test]
async fn regenerate_rewinds_to_the_last_question_and_writes_it_again() {
    let f = manager(embedded_only()).await;
    let conversation = f.manager.conversation();
    assert!(matches!(
        conversation.rewind_for_regenerate().await,
        Err(ManagerError::NothingToRegenerate)
    ));
    send(&f.manager, "first").await;
    let second = send(&f.manager, "second").await;
    let text = conversation.rewind_for_regenerate().await.expect("rewound");
    assert_eq!(text, "second");
    assert_eq!(roles(&history(&f.manager).await), [Role::User, Role::Assistant]);
    assert_eq!(conversation.messages().len(), 2);
    let again = send(&f.manager, &text).await;
    let stored = history(&f.manager).await;
    assert_eq!(stored.len(), 4);
    assert_eq!(again.user_message, Some(stored[2].id));
    assert_ne!(again.user_message, second.user_message, "written again, under a new id");
    assert_eq!(stored[2].content, "second");
}

#[tokio::test]
async fn only_a_user_message_of_this_conversation_can_be_edited() {
    let f = manager(embedded_only()).await;
    let conversation = f.manager.conversation();
    let first = send(&f.manager, "first").await;
    send(&f.manager, "second").await;
    let reply = first.message.expect("stored");
    assert!(matches!(
        conversation.rewind_for_edit(reply).await,
        Err(ManagerError::NotAUserMessage(id)) if id == reply
    ));
    assert!(matches!(
        conversation.rewind_for_edit(MessageId(9_999)).await,
        Err(ManagerError::MessageNotFound(_))
    ));
    // A message of another conversation is not this one's to edit.
    let elsewhere = first.user_message.expect("stored");
    conversation.start_new();
    send(&f.manager, "another chat").await;
    assert!(matches!(
        conversation.rewind_for_edit(elsewhere).await,
        Err(ManagerError::MessageNotFound(_))
    ));
    // Back in the first conversation, editing its first question drops everything after it.
    conversation
        .resume(first.session.clone().expect("saved"))
        .await
        .expect("resumed");
    conversation.rewind_for_edit(elsewhere).await.expect("rewound");
    assert!(history(&f.manager).await.is_empty());
    assert!(conversation.messages().is_empty());
    send(&f.manager, "first, edited").await;
    assert_eq!(history(&f.manager).await[0].content, "first, edited");
}

#[tokio::test]
async fn a_system_prompt_opens_the_conversation_titled_once_after_the_question() {
    let f = manager(embedded_only()).await;
    let conversation = f.manager.conversation();
    conversation
        .open_with_system_prompt("Be brief.", Some("What is a hearth, in one word?"))
        .await;
    send(&f.manager, "What is a hearth, in one word?").await;
    let session = conversation.session().expect("saved");
    let stored = f.manager.store().get_session(session.clone()).await.unwrap().unwrap();
    assert_eq!(stored.title, "What is a hearth, in one word?");
    assert_eq!(
        roles(&history(&f.manager).await),
        [Role::System, Role::User, Role::Assistant]
    );
    conversation
        .rename(session.clone(), "  Hearths  ")
        .await
        .expect("renamed");
    let stored = f.manager.store().get_session(session.clone()).await.unwrap().unwrap();
    assert_eq!(stored.title, "Hearths");

    // Deleting the open conversation starts a new one; the next message makes it.
    assert!(conversation.delete_session(session.clone()).await.expect("deleted"));
    assert!(conversation.session().is_none() && conversation.is_empty());
    assert!(!conversation.delete_session(session).await.expect("already gone"));
    send(&f.manager, "hello again").await;
    let sessions = f.manager.store().list_sessions(LOCAL_USER.into(), 10).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].title, "hello again");
}
