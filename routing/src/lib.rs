//! Tenant routing: which federation node (database) a tenant's request goes
//! to. The control plane (`GET /api/fed/routing/resolve`) and Rust gateways
//! (feature `gateway`) resolve with the same code, [`Table::resolve`], over
//! the same [`Snapshot`] the control plane publishes to NATS KV.
//!
//! The order, first usable answer wins:
//!
//! 1. `region_rule`: a region was asked for and the tenant has rules for it
//!    (primary rules before the others), chosen by weight;
//! 2. `primary`: the tenant map's primary node;
//! 3. `weighted`: any of the tenant's rules (primary ones first), by weight;
//! 4. `fallback_priority`: of every node the tenant has a rule for (weight 0
//!    included: a standby) or maps to, the highest `priority`;
//! 5. `default`: the `default` node.
//!
//! A node is usable when its effective status is `online` or `degraded`
//! (see [`NodeStatus`]). The weighted choice is weighted rendezvous hashing
//! on the request's key: the same key picks the same node while the
//! candidates stay the same (a session sticks), removing a node moves only
//! the keys that were on it, and over many keys each node gets its share
//! of the weights. Without a key the choice is random, by weight.

#[cfg(feature = "gateway")]
pub mod gateway;

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The NATS KV bucket the control plane publishes the snapshot to.
pub const KV_BUCKET: &str = "fed_routing";
/// The key of the snapshot in [`KV_BUCKET`].
pub const KV_KEY: &str = "snapshot";
/// The node every unrouted tenant goes to.
pub const DEFAULT_NODE: &str = "default";

/// A node's effective status: its administrative state combined with its
/// hub's liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// The hub is online, or the node has no hub.
    Online,
    /// The hub's heartbeats are late but it is not yet offline: still used
    /// (its database is not the hub, and skipping on lateness alone would
    /// move tenants back and forth on a slow network).
    Degraded,
    /// The hub is offline: skipped.
    Offline,
    /// The hub is in a maintenance window: skipped.
    Maintenance,
    /// The hub is not in the catalog (never registered, or deregistered): skipped.
    HubMissing,
    /// Disabled by an operator: skipped.
    Disabled,
}

impl NodeStatus {
    pub fn usable(self) -> bool {
        matches!(self, NodeStatus::Online | NodeStatus::Degraded)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Online => "online",
            NodeStatus::Degraded => "degraded",
            NodeStatus::Offline => "offline",
            NodeStatus::Maintenance => "maintenance",
            NodeStatus::HubMissing => "hub_missing",
            NodeStatus::Disabled => "disabled",
        }
    }
}

/// A node as gateways see it: never its database URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub node_id: String,
    pub region: String,
    pub priority: i32,
    /// The hub whose liveness is the node's.
    #[serde(default)]
    pub hub: Option<String>,
    pub status: NodeStatus,
}

/// A routing rule: `tenant_id` in `region` may go to `node_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub tenant_id: String,
    pub region: String,
    pub node_id: String,
    pub is_primary: bool,
    /// 0: never chosen by weight, only as a fallback by priority.
    pub weight: u32,
}

/// A tenant's primary node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantEntry {
    pub tenant_id: String,
    pub primary_node_id: String,
    pub primary_region: String,
    #[serde(default)]
    pub metadata: serde_json::Value,
}

/// Everything a gateway needs to resolve, as published to NATS KV.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Grows with every change of the routing tables.
    pub version: i64,
    pub nodes: Vec<Node>,
    pub rules: Vec<Rule>,
    pub tenants: Vec<TenantEntry>,
}

/// Why a node was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Primary,
    RegionRule,
    Weighted,
    FallbackPriority,
    Default,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::Primary,
        Reason::RegionRule,
        Reason::Weighted,
        Reason::FallbackPriority,
        Reason::Default,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Primary => "primary",
            Reason::RegionRule => "region_rule",
            Reason::Weighted => "weighted",
            Reason::FallbackPriority => "fallback_priority",
            Reason::Default => "default",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer: the node, the region the request is in (asked for, or the
/// tenant's primary region), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    pub node: &'a Node,
    pub region: Option<&'a str>,
    pub reason: Reason,
}

/// What one tenant has.
#[derive(Debug, Default, Clone)]
struct TenantRoutes {
    entry: Option<TenantEntry>,
    /// Indexes into `Table::nodes` with the rule.
    rules: Vec<(usize, Rule)>,
}

/// A snapshot indexed for resolving.
#[derive(Debug, Clone)]
pub struct Table {
    version: i64,
    nodes: Vec<Node>,
    by_id: HashMap<String, usize>,
    tenants: HashMap<String, TenantRoutes>,
    default: Node,
}

impl Table {
    pub fn new(snapshot: Snapshot) -> Table {
        let nodes = snapshot.nodes;
        let by_id: HashMap<String, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.node_id.clone(), i))
            .collect();
        let mut tenants: HashMap<String, TenantRoutes> = HashMap::new();
        for rule in snapshot.rules {
            if let Some(&i) = by_id.get(&rule.node_id) {
                tenants
                    .entry(rule.tenant_id.clone())
                    .or_default()
                    .rules
                    .push((i, rule));
            }
        }
        for entry in snapshot.tenants {
            let id = entry.tenant_id.clone();
            tenants.entry(id).or_default().entry = Some(entry);
        }
        let default = by_id
            .get(DEFAULT_NODE)
            .map(|&i| nodes[i].clone())
            .unwrap_or_else(|| Node {
                node_id: DEFAULT_NODE.into(),
                region: DEFAULT_NODE.into(),
                priority: 0,
                hub: None,
                status: NodeStatus::Online,
            });
        Table {
            version: snapshot.version,
            nodes,
            by_id,
            tenants,
            default,
        }
    }

    pub fn version(&self) -> i64 {
        self.version
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, node_id: &str) -> Option<&Node> {
        self.by_id.get(node_id).map(|&i| &self.nodes[i])
    }

    /// The tenant's map entry, if it has one.
    pub fn tenant(&self, tenant: &str) -> Option<&TenantEntry> {
        self.tenants.get(tenant).and_then(|t| t.entry.as_ref())
    }

    /// Resolves by the nodes' own statuses (what a gateway knows).
    pub fn resolve<'a>(
        &'a self,
        tenant: &str,
        region: Option<&'a str>,
        key: Option<&str>,
    ) -> Decision<'a> {
        self.resolve_with(tenant, region, key, |n| n.status.usable())
    }

    /// Resolves with `usable` saying which nodes may be chosen (the control
    /// plane asks its catalog, which is fresher than the nodes' statuses).
    pub fn resolve_with<'a>(
        &'a self,
        tenant: &str,
        region: Option<&'a str>,
        key: Option<&str>,
        usable: impl Fn(&Node) -> bool,
    ) -> Decision<'a> {
        let Some(t) = self.tenants.get(tenant) else {
            return self.default_decision(region);
        };
        let primary_region = t.entry.as_ref().map(|e| e.primary_region.as_str());
        let in_region = region.or(primary_region);
        let decide = |i: usize, reason| Decision {
            node: &self.nodes[i],
            region: in_region,
            reason,
        };
        let seed = Seed::new(key);
        if let Some(r) = region {
            if let Some(i) = self.weighted(t, |rule| rule.region == r, &usable, &seed) {
                return decide(i, Reason::RegionRule);
            }
        }
        if let Some(e) = &t.entry {
            if let Some(&i) = self.by_id.get(&e.primary_node_id) {
                if usable(&self.nodes[i]) {
                    return decide(i, Reason::Primary);
                }
            }
        }
        if let Some(i) = self.weighted(t, |_| true, &usable, &seed) {
            return decide(i, Reason::Weighted);
        }
        let mapped = t
            .entry
            .as_ref()
            .and_then(|e| self.by_id.get(&e.primary_node_id).copied());
        let standby = t
            .rules
            .iter()
            .map(|(i, _)| *i)
            .chain(mapped)
            .filter(|&i| usable(&self.nodes[i]) && self.nodes[i].node_id != DEFAULT_NODE)
            .max_by(|&a, &b| {
                let (a, b) = (&self.nodes[a], &self.nodes[b]);
                // Highest priority; among equals the first node id.
                a.priority
                    .cmp(&b.priority)
                    .then_with(|| b.node_id.cmp(&a.node_id))
            });
        if let Some(i) = standby {
            return decide(i, Reason::FallbackPriority);
        }
        let mut d = self.default_decision(region);
        d.region = in_region;
        d
    }

    fn default_decision<'a>(&'a self, region: Option<&'a str>) -> Decision<'a> {
        Decision {
            node: &self.default,
            region,
            reason: Reason::Default,
        }
    }

    /// Among the tenant's usable rules with weight that `wanted` keeps,
    /// primary ones if any, the one rendezvous hashing picks.
    fn weighted(
        &self,
        t: &TenantRoutes,
        wanted: impl Fn(&Rule) -> bool,
        usable: &impl Fn(&Node) -> bool,
        seed: &Seed,
    ) -> Option<usize> {
        let candidates = || {
            t.rules
                .iter()
                .filter(|(i, r)| r.weight > 0 && wanted(r) && usable(&self.nodes[*i]))
        };
        let primaries = candidates().any(|(_, r)| r.is_primary);
        candidates()
            .filter(|(_, r)| r.is_primary || !primaries)
            .map(|(i, r)| (*i, seed.score(&self.nodes[*i].node_id, r.weight)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    }
}

/// The request's part of each node's rendezvous score.
struct Seed(u64);

impl Seed {
    fn new(key: Option<&str>) -> Seed {
        match key {
            Some(k) => Seed(fnv1a(FNV_OFFSET, k.as_bytes())),
            None => {
                use std::hash::{BuildHasher, Hasher};
                Seed(
                    std::collections::hash_map::RandomState::new()
                        .build_hasher()
                        .finish(),
                )
            }
        }
    }

    /// `-ln(u) / weight`, `u` uniform in (0, 1) from (key, node): the
    /// smallest wins, which picks each node with probability weight / total.
    fn score(&self, node_id: &str, weight: u32) -> f64 {
        let h = mix(fnv1a(self.0 ^ 0x9e37_79b9_7f4a_7c15, node_id.as_bytes()));
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        -u.ln() / f64::from(weight)
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a: stable across builds and platforms (the control plane and every
/// gateway must agree on where a key goes).
fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64's finaliser: FNV's low-entropy high bits, spread.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, region: &str, priority: i32, status: NodeStatus) -> Node {
        Node {
            node_id: id.into(),
            region: region.into(),
            priority,
            hub: None,
            status,
        }
    }

    fn rule(tenant: &str, region: &str, node: &str, primary: bool, weight: u32) -> Rule {
        Rule {
            tenant_id: tenant.into(),
            region: region.into(),
            node_id: node.into(),
            is_primary: primary,
            weight,
        }
    }

    fn table() -> Table {
        use NodeStatus::*;
        Table::new(Snapshot {
            version: 1,
            nodes: vec![
                node("default", "default", 0, Online),
                node("a", "eu", 1, Online),
                node("b", "eu", 5, Online),
                node("c", "us", 0, Online),
                node("down", "us", 9, Offline),
                node("standby", "eu", 3, Online),
            ],
            rules: vec![
                rule("t1", "eu", "a", false, 100),
                rule("t1", "eu", "b", false, 300),
                rule("t1", "us", "c", false, 100),
                rule("t1", "us", "down", true, 100),
                rule("t2", "eu", "down", false, 100),
                rule("t2", "eu", "standby", false, 0),
            ],
            tenants: vec![TenantEntry {
                tenant_id: "t3".into(),
                primary_node_id: "c".into(),
                primary_region: "us".into(),
                metadata: serde_json::json!({}),
            }],
        })
    }

    #[test]
    fn the_order_of_reasons() {
        let t = table();
        let d = t.resolve("t1", Some("us"), Some("k"));
        // The primary rule's node is offline: the other rule in the region.
        assert_eq!(
            (d.node.node_id.as_str(), d.reason),
            ("c", Reason::RegionRule)
        );
        assert_eq!(t.resolve("t3", None, None).reason, Reason::Primary);
        assert_eq!(t.resolve("t3", None, None).region, Some("us"));
        assert_eq!(t.resolve("t1", None, Some("k")).reason, Reason::Weighted);
        let d = t.resolve("t2", None, Some("k"));
        assert_eq!(
            (d.node.node_id.as_str(), d.reason),
            ("standby", Reason::FallbackPriority)
        );
        let d = t.resolve("nobody", Some("eu"), None);
        assert_eq!(
            (d.node.node_id.as_str(), d.reason),
            ("default", Reason::Default)
        );
        let d = t.resolve_with("t3", None, None, |n| n.node_id == "default");
        assert_eq!(
            (d.node.node_id.as_str(), d.reason),
            ("default", Reason::Default)
        );
    }

    #[test]
    fn a_key_sticks_and_only_the_moved_keys_move() {
        let t = table();
        for k in 0..200 {
            let key = format!("session-{k}");
            let first = t.resolve("t1", Some("eu"), Some(&key)).node.node_id.clone();
            for _ in 0..3 {
                assert_eq!(t.resolve("t1", Some("eu"), Some(&key)).node.node_id, first);
            }
            // Without b, keys on a stay on a.
            let without_b = t.resolve_with("t1", Some("eu"), Some(&key), |n| n.node_id != "b");
            if first == "a" {
                assert_eq!(without_b.node.node_id, "a");
            }
        }
    }

    #[test]
    fn weights_share_the_keys() {
        let t = table();
        let mut on_b = 0;
        for k in 0..4000 {
            if t.resolve("t1", Some("eu"), Some(&k.to_string()))
                .node
                .node_id
                == "b"
            {
                on_b += 1;
            }
        }
        // 3/4 expected; 5 standard deviations is about ±137.
        assert!((2863..=3137).contains(&on_b), "{on_b}");
    }

    #[test]
    fn the_snapshot_reads_back() {
        let s = Snapshot {
            version: 3,
            nodes: table().nodes,
            rules: vec![rule("t", "eu", "a", true, 0)],
            tenants: vec![],
        };
        let json = serde_json::to_string(&s).unwrap_or_default();
        assert!(json.contains(r#""status":"online""#), "{json}");
        assert_eq!(serde_json::from_str::<Snapshot>(&json).ok(), Some(s));
    }
}
