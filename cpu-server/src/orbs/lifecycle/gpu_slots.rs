//! GPU slots of one host (`ORB_GPUS` × `ORB_GPU_SLOTS_PER_DEVICE`): which device each
//! orb process runs on. A slot is taken with the process's launch and freed with its
//! end (the same moments as the `MAX_CONCURRENT_ORBS` slot), keyed by the process's
//! generation, so a room whose old process is still stopping while a new one starts
//! holds two. Pure: the lifecycle owns it.

use std::collections::HashMap;

/// The device ids and who holds their slots.
#[derive(Debug, Default)]
pub struct GpuSlots {
    devices: Vec<String>,
    per_device: usize,
    /// Generation → index into `devices`.
    held: HashMap<u64, usize>,
}

impl GpuSlots {
    /// `devices` (empty: no GPU slots) with `per_device` orbs each.
    pub fn new(devices: Vec<String>, per_device: usize) -> Self {
        Self {
            devices,
            per_device: per_device.max(1),
            held: HashMap::new(),
        }
    }

    /// Whether orbs are placed on GPUs at all.
    pub fn enabled(&self) -> bool {
        !self.devices.is_empty()
    }

    /// Slots in all (`None` without GPUs).
    pub fn total(&self) -> Option<usize> {
        self.enabled().then(|| self.devices.len() * self.per_device)
    }

    /// Slots held now.
    pub fn used(&self) -> usize {
        self.held.len()
    }

    /// A slot for process `generation` on the least used device (the first of equals),
    /// or `None` when every slot is held or there are no GPUs.
    pub fn take(&mut self, generation: u64) -> Option<String> {
        if let Some(&index) = self.held.get(&generation) {
            return Some(self.devices[index].clone());
        }
        let mut load = vec![0usize; self.devices.len()];
        for &index in self.held.values() {
            load[index] += 1;
        }
        let index = (0..self.devices.len())
            .filter(|&i| load[i] < self.per_device)
            .min_by_key(|&i| (load[i], i))?;
        self.held.insert(generation, index);
        Some(self.devices[index].clone())
    }

    /// Holds a slot of `device` for process `generation` (an orb handed over by an
    /// upgrade keeps its device); a device no longer configured holds nothing.
    pub fn hold(&mut self, generation: u64, device: &str) {
        if let Some(index) = self.devices.iter().position(|d| d == device) {
            self.held.insert(generation, index);
        }
    }

    /// Frees the slot of process `generation` (nothing when it held none).
    pub fn free(&mut self, generation: u64) {
        self.held.remove(&generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(devices: &[&str], per: usize) -> GpuSlots {
        GpuSlots::new(devices.iter().map(|d| (*d).to_owned()).collect(), per)
    }

    /// Rule: orbs spread over the devices, at most `per_device` each, and a freed slot is reused.
    #[test]
    fn orbs_spread_over_devices_and_freed_slots_are_reused() {
        let mut s = slots(&["0", "1"], 2);
        assert_eq!(s.total(), Some(4));
        let got: Vec<Option<String>> = (1..=5).map(|g| s.take(g)).collect();
        assert_eq!(
            got,
            [Some("0"), Some("1"), Some("0"), Some("1"), None].map(|d| d.map(str::to_owned))
        );
        assert_eq!(s.used(), 4);
        s.free(2);
        s.free(2);
        assert_eq!(s.used(), 3);
        assert_eq!(s.take(6).as_deref(), Some("1"), "the freed device");
        assert_eq!(s.take(6).as_deref(), Some("1"), "taking twice holds one slot");
        assert_eq!(s.used(), 4);
    }

    #[test]
    fn without_devices_there_are_no_slots() {
        let mut s = GpuSlots::default();
        assert!(!s.enabled());
        assert_eq!(s.total(), None);
        assert_eq!(s.take(1), None);
        s.free(1);
    }
}
