//! Whether a human is in the orb's room: the union of what the room socket
//! says (`peer-discovery`, `user-joined`, `user-left`) and what the manager
//! says over IPC (`participant_joined`, `participant_left`).
//!
//! Both views come from the same cpu-server registry, so once both have caught
//! up they agree; between times the union errs towards "someone is there",
//! which is the safe side: the AI staying a little long in an empty room costs
//! little (the manager's `ROOM_EMPTY_GRACE` still ends it), the AI leaving a
//! live call is the defect this guards against. The room view is kept as last
//! known while the room socket is reconnecting (it is replaced by the next
//! `peer-discovery`), and the manager's view keeps arriving over IPC meanwhile,
//! so a reconnect never looks like an empty room.

use std::collections::BTreeSet;

use crate::participants::Participants;

/// Who is present, from both sources. Owned by the session.
#[derive(Debug, Default, Clone)]
pub struct Presence {
    /// The room socket's view (all participants but this orb, AI ones included).
    pub room: Participants,
    /// Human user ids the manager reported joined and not yet left.
    manager: BTreeSet<String>,
}

impl Presence {
    /// `participant_joined` from the manager (only humans are reported; an
    /// AI id is ignored all the same).
    pub fn manager_joined(&mut self, user_id: &str, user_role: &str) {
        if user_role != "ai" && !user_id.starts_with("ai-orb-") {
            self.manager.insert(user_id.to_owned());
        }
    }

    /// `participant_left` from the manager.
    pub fn manager_left(&mut self, user_id: &str) {
        self.manager.remove(user_id);
    }

    /// The humans present by either view, sorted.
    pub fn humans(&self) -> BTreeSet<String> {
        let mut humans: BTreeSet<String> = self.room.human_ids().collect();
        humans.extend(self.manager.iter().cloned());
        humans
    }

    /// Whether any human is present by either view.
    pub fn any_human(&self) -> bool {
        !self.manager.is_empty() || self.room.humans() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::participants::tests::p;

    #[test]
    fn present_if_either_view_says_so() {
        let mut presence = Presence::default();
        assert!(!presence.any_human());
        presence.room.reset(vec![p("ai-x", "ai", "ai")]);
        assert!(!presence.any_human(), "an AI is nobody");
        presence.manager_joined("c1", "coach");
        assert!(
            presence.any_human(),
            "the manager saw the coach before the room socket did"
        );
        presence.room.joined(p("c1", "coach", "human"));
        presence.room.joined(p("k1", "client", "human"));
        assert_eq!(presence.humans().into_iter().collect::<Vec<_>>(), ["c1", "k1"]);
        presence.manager_left("c1");
        assert!(presence.any_human(), "the room still has both");
        presence.room.left("c1");
        presence.room.left("k1");
        assert!(!presence.any_human());
    }

    #[test]
    fn a_reconnecting_room_socket_keeps_its_view_and_ipc_carries_on() {
        let mut presence = Presence::default();
        presence.room.reset(vec![p("c1", "coach", "human")]);
        // The socket drops: nothing changes the room view until the next peer-discovery.
        presence.manager_joined("k1", "client");
        presence.manager_left("k1");
        assert!(presence.any_human(), "the coach is still known");
        // Rejoined: the fresh snapshot replaces the room view.
        presence.room.reset(vec![]);
        assert!(!presence.any_human());
        presence.manager_joined("c2", "coach");
        presence.room.reset(vec![]);
        assert!(presence.any_human(), "a snapshot does not erase what the manager said");
    }

    #[test]
    fn the_manager_naming_an_ai_is_ignored() {
        let mut presence = Presence::default();
        presence.manager_joined("ai-orb-s1", "coach");
        presence.manager_joined("bot", "ai");
        assert!(!presence.any_human());
        presence.manager_left("nobody");
        assert!(!presence.any_human());
    }
}
