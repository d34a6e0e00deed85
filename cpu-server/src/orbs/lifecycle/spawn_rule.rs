//! The spawn trigger: which humans call for a room's orb under `ORB_SPAWN_ON`,
//! and the humans of each room as the registry reported them.

use std::collections::HashMap;

use crate::settings::SpawnOn;

/// A human's role in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// `coach`.
    Coach,
    /// `client`.
    Client,
    /// Any other role, as the participant gave it.
    Other(String),
}

impl Role {
    /// The role for a `userRole` value.
    pub fn parse(role: &str) -> Self {
        match role {
            "coach" => Self::Coach,
            "client" => Self::Client,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The `userRole` value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Coach => "coach",
            Self::Client => "client",
            Self::Other(role) => role,
        }
    }
}

/// Whether a human of `role` joining calls for the room's orb.
pub fn join_calls_for_orb(spawn_on: SpawnOn, role: &Role) -> bool {
    match spawn_on {
        SpawnOn::Coach => *role == Role::Coach,
        SpawnOn::Any => true,
        SpawnOn::Manual => false,
    }
}

/// Whether the humans now in a room call for an orb.
pub fn room_calls_for_orb(spawn_on: SpawnOn, humans: &Humans) -> bool {
    humans.0.values().any(|role| join_calls_for_orb(spawn_on, role))
}

/// The humans of one room: userId → role.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Humans(pub HashMap<String, Role>);

impl Humans {
    /// The first human with `role` (the orb's `--coach` / `--client` argument).
    pub fn first_with(&self, role: &Role) -> Option<String> {
        let mut ids: Vec<&String> = self.0.iter().filter(|(_, r)| *r == role).map(|(id, _)| id).collect();
        ids.sort();
        ids.first().map(|id| (*id).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule: ORB_SPAWN_ON=coach starts an orb for a coach only; any for anyone; manual never.
    #[test]
    fn spawn_on_decides_who_calls_for_an_orb() {
        let client = Humans([("c1".to_owned(), Role::Client)].into());
        let both = Humans([("c1".to_owned(), Role::Client), ("k1".to_owned(), Role::Coach)].into());
        assert!(!room_calls_for_orb(SpawnOn::Coach, &client));
        assert!(room_calls_for_orb(SpawnOn::Coach, &both));
        assert!(room_calls_for_orb(SpawnOn::Any, &client));
        assert!(!room_calls_for_orb(SpawnOn::Manual, &both));
        assert!(!room_calls_for_orb(SpawnOn::Any, &Humans::default()));
        assert_eq!(Role::parse("observer").as_str(), "observer");
        assert_eq!(both.first_with(&Role::Coach).as_deref(), Some("k1"));
    }
}
