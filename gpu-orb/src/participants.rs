//! Who is in the room, as the orb learns it from `peer-discovery`,
//! `user-joined` and `user-left`.

use std::collections::BTreeMap;

use shared::room::{PARTICIPANT_AI, Participant};

/// The room's participants other than this orb, by user id.
#[derive(Debug, Default, Clone)]
pub struct Participants {
    by_id: BTreeMap<String, Participant>,
}

impl Participants {
    /// Replaces everything with a `peer-discovery` snapshot (on every (re)join).
    pub fn reset(&mut self, peers: Vec<Participant>) {
        self.by_id = peers.into_iter().map(|p| (p.user_id.clone(), p)).collect();
    }

    /// Records a `user-joined`.
    pub fn joined(&mut self, participant: Participant) {
        self.by_id.insert(participant.user_id.clone(), participant);
    }

    /// Records a `user-left`; true if it was known.
    pub fn left(&mut self, user_id: &str) -> bool {
        self.by_id.remove(user_id).is_some()
    }

    /// Number of humans present.
    pub fn humans(&self) -> usize {
        self.by_id.values().filter(|p| is_human(p)).count()
    }

    /// The user ids of the humans present.
    pub fn human_ids(&self) -> impl Iterator<Item = String> + '_ {
        self.by_id.values().filter(|p| is_human(p)).map(|p| p.user_id.clone())
    }

    /// User ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.by_id.keys().cloned().collect()
    }
}

fn is_human(p: &Participant) -> bool {
    p.participant_type != PARTICIPANT_AI && p.user_role != "ai"
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A participant for tests (also used by `presence`'s tests).
    pub(crate) fn p(id: &str, role: &str, kind: &str) -> Participant {
        Participant {
            user_id: id.into(),
            user_name: id.into(),
            user_role: role.into(),
            participant_type: kind.into(),
        }
    }

    #[test]
    fn tracks_joins_leaves_and_snapshots() {
        let mut ps = Participants::default();
        ps.reset(vec![p("c1", "coach", "human"), p("ai-x", "ai", "ai")]);
        assert_eq!(ps.humans(), 1);
        ps.joined(p("k1", "client", "human"));
        assert_eq!(ps.humans(), 2);
        assert_eq!(ps.ids(), ["ai-x", "c1", "k1"]);
        assert!(ps.left("c1"));
        assert!(!ps.left("c1"), "second leave is a no-op");
        assert_eq!(ps.humans(), 1);
        ps.reset(vec![]);
        assert_eq!(ps.humans(), 0);
    }

    #[test]
    fn human_ids_leave_out_ai_participants() {
        let mut ps = Participants::default();
        ps.reset(vec![
            p("c1", "coach", "human"),
            p("bot", "ai", "ai"),
            p("x", "ai", "human"),
        ]);
        assert_eq!(ps.human_ids().collect::<Vec<_>>(), ["c1"]);
    }
}
