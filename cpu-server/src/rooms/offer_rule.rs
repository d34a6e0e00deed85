//! Who sends the WebRTC offer between an existing peer and a joiner (docs/protocol.md §1.4).

/// The facts of one participant the offer rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side<'a> {
    /// Its `userId`.
    pub user_id: &'a str,
    /// Its `userRole` (`coach`, `client`, `ai`…).
    pub user_role: &'a str,
    /// Joined as the AI.
    pub is_ai: bool,
}

/// `shouldCreateOffer` told to `existing` in the `user-joined` about `joining`:
/// whether the existing peer creates the offer. The AI never offers.
pub fn should_create_offer(existing: Side<'_>, joining: Side<'_>) -> bool {
    if joining.is_ai {
        return true;
    }
    if existing.is_ai {
        return false;
    }
    match (existing.user_role, joining.user_role) {
        ("coach", "client") => true,
        ("client", "coach") => false,
        _ => existing.user_id < joining.user_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn human<'a>(user_id: &'a str, user_role: &'a str) -> Side<'a> {
        Side {
            user_id,
            user_role,
            is_ai: false,
        }
    }

    fn ai(user_id: &str) -> Side<'_> {
        Side {
            user_id,
            user_role: "ai",
            is_ai: true,
        }
    }

    #[test]
    fn ai_joining_is_offered_to_by_everyone() {
        assert!(should_create_offer(human("z", "coach"), ai("a")));
        assert!(should_create_offer(human("z", "client"), ai("a")));
        assert!(should_create_offer(human("a", "client"), ai("z")));
    }

    #[test]
    fn existing_ai_never_offers() {
        assert!(!should_create_offer(ai("a"), human("z", "coach")));
        assert!(!should_create_offer(ai("a"), human("z", "client")));
    }

    #[test]
    fn coach_offers_to_client_whatever_the_ids() {
        assert!(should_create_offer(human("z", "coach"), human("a", "client")));
        assert!(should_create_offer(human("a", "coach"), human("z", "client")));
    }

    #[test]
    fn client_waits_for_coach_whatever_the_ids() {
        assert!(!should_create_offer(human("a", "client"), human("z", "coach")));
        assert!(!should_create_offer(human("z", "client"), human("a", "coach")));
    }

    #[test]
    fn otherwise_the_smaller_id_offers() {
        assert!(should_create_offer(human("a", "coach"), human("b", "coach")));
        assert!(!should_create_offer(human("b", "coach"), human("a", "coach")));
        assert!(should_create_offer(human("a", "client"), human("b", "client")));
        assert!(!should_create_offer(human("b", ""), human("a", "observer")));
        assert!(
            !should_create_offer(human("a", "x"), human("a", "x")),
            "equal ids: nobody"
        );
    }

    #[test]
    fn exactly_one_side_offers_between_two_distinct_humans() {
        let people = [
            human("a", "coach"),
            human("b", "client"),
            human("c", "coach"),
            human("d", ""),
        ];
        for x in people {
            for y in people {
                if x.user_id != y.user_id {
                    assert_ne!(should_create_offer(x, y), should_create_offer(y, x), "{x:?} {y:?}");
                }
            }
        }
    }
}
