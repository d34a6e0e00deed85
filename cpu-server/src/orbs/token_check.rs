//! The OrbManager as auth's [`OrbTokenCheck`]: an orb token is valid when it
//! is the room's current orb process's, or an unexpired one-time operator
//! token (consumed by the check).

use futures_util::future::BoxFuture;
use shared::secret::Secret;

use super::OrbsHandle;
use crate::auth::orb_tokens::OrbTokenCheck;

impl OrbTokenCheck for OrbsHandle {
    fn verify<'a>(&'a self, room: &'a str, token: &'a Secret) -> BoxFuture<'a, bool> {
        Box::pin(self.verify_orb_token(room, token.expose()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use shared::room::{ErrorCode, JoinRequest};

    use super::*;
    use crate::auth::{Auth, Credential};
    use crate::settings::SecuritySettings;

    /// An OrbManager that never launches anything (no room events are sent).
    fn idle_manager() -> (OrbsHandle, crate::rooms::events::RoomEventSender) {
        struct Nobody;
        impl crate::rooms::events::RoomNotifier for Nobody {
            fn notify_room(&self, _: &str, _: shared::room::RoomMessage) -> bool {
                true
            }
        }
        let dotenv = shared::settings::DotEnv::default();
        let mut v = shared::settings::Validator::new(&dotenv);
        let settings = crate::settings::OrbArgs::default().validate(&mut v, false, false);
        let (events, events_rx) = crate::rooms::events::room_event_channel();
        let launcher = Arc::new(crate::orbs::launcher::LocalLauncher::new(
            settings.clone(),
            "127.0.0.1:9".into(),
        ));
        let orbs = crate::orbs::spawn_manager_with(settings, events_rx, Arc::new(Nobody), launcher, Arc::default());
        (orbs, events)
    }

    fn ai_join() -> JoinRequest {
        JoinRequest {
            user_id: "ai-orb-1".into(),
            user_name: String::new(),
            user_role: "ai".into(),
            participant_type: "ai".into(),
        }
    }

    /// Rule: an operator token admits one AI join, once, and only in its room,
    /// whether it came with the upgrade or in the join.
    #[tokio::test]
    async fn operator_tokens_work_once_and_only_in_their_room() {
        let (orbs, _events) = idle_manager();
        let auth = Auth::new(&SecuritySettings::default(), Arc::new(orbs.clone()));
        let ai = ai_join();
        let token = orbs
            .issue_operator_token("r1", Duration::from_secs(60))
            .await
            .expect("token");
        let secret = || Some(Secret::new(token.clone()));
        let other_room = auth.check_join("r2", &Credential::None, secret(), &ai).await;
        assert_eq!(other_room.map_err(|e| e.0), Err(ErrorCode::Forbidden));
        let upgrade = Credential::Opaque(Secret::new(token.clone()));
        assert_eq!(auth.check_join("r1", &upgrade, None, &ai).await, Ok(()));
        let again = auth.check_join("r1", &Credential::None, secret(), &ai).await;
        assert_eq!(
            again.map_err(|e| e.0),
            Err(ErrorCode::Forbidden),
            "one-time token reused"
        );
    }
}
