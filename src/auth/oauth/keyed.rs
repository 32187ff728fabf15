//! Slots chosen per request: one per subject token (token exchange) and per evaluated
//! scope (a scope formula over `$User` fields), so that each user's or caller's token is
//! cached apart, under a key that covers what shaped it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Grant, Tokens};
use crate::token::{TokenKey, TokenSlot};

/// Keys with a slot, per principal. Past this, slots without a usable token are dropped
/// first, then all: a caller sending a new subject token or user per request must not grow
/// memory without bound.
const MAX_KEYS: usize = 1024;

/// The slots of one principal, by SHA-256 of what varies per request.
pub struct KeyedSlots {
    template: TokenKey<Grant>,
    tokens: Arc<Tokens>,
    slots: Mutex<HashMap<[u8; 32], Arc<TokenSlot<Grant>>>>,
}

impl KeyedSlots {
    /// `template` is the key of every slot, before the subject token and scope are set.
    pub fn new(template: TokenKey<Grant>, tokens: &Arc<Tokens>) -> KeyedSlots {
        KeyedSlots {
            template,
            tokens: tokens.clone(),
            slots: Mutex::new(HashMap::new()),
        }
    }

    pub fn key(&self) -> &TokenKey<Grant> {
        &self.template
    }

    /// The slot for what varies per request (`parts`: the subject token, the evaluated
    /// scope and claims); `customize` sets them on the grant of a new slot.
    pub fn slot(&self, parts: &[Option<&str>], customize: impl FnOnce(&mut Grant)) -> Arc<TokenSlot<Grant>> {
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        for part in parts {
            // Tagged and length-prefixed, so that no two different lists hash the same input.
            match part {
                None => hash.update(&[0]),
                Some(part) => {
                    hash.update(&[1]);
                    hash.update(&(part.len() as u64).to_be_bytes());
                    hash.update(part.as_bytes());
                }
            }
        }
        let id: [u8; 32] = hash.finish().as_ref().try_into().expect("SHA-256 is 32 bytes");
        let mut slots = self.slots.lock().expect("keyed slots poisoned");
        if let Some(slot) = slots.get(&id) {
            return slot.clone();
        }
        if slots.len() >= MAX_KEYS {
            slots.retain(|_, slot| slot.status().cached);
            if slots.len() >= MAX_KEYS {
                slots.clear();
            }
        }
        let mut key = self.template.clone();
        customize(&mut key.grant);
        let slot = self.tokens.slot(key);
        slots.insert(id, slot.clone());
        slot
    }

    /// How many keys have a slot.
    pub fn keys(&self) -> usize {
        self.slots.lock().expect("keyed slots poisoned").len()
    }
}
