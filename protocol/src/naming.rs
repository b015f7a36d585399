//! Naming rules: project slugs, mesh namespaces and spoke instance codes.

use thiserror::Error;

/// Longest slug the rule admits (a DNS label).
pub const SLUG_MAX_LEN: usize = 63;

/// Why a name was refused, phrased for an operator.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NamingError {
    #[error("slug must match ^[a-z0-9]([a-z0-9-]{{0,61}}[a-z0-9])?$ (lower-case letters, digits and inner hyphens, 1-63 characters)")]
    Slug,
    #[error("mesh_namespace must be \"hub.{0}\"")]
    MeshNamespace(String),
    #[error("instance code must be an upper-case ISO 3166-1 alpha-3 code such as FRA")]
    InstanceCode,
}

/// The slug rule `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`, without a regex engine.
pub fn is_valid_slug(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match b {
        [] => false,
        [only] => alnum(only),
        [first, middle @ .., last] => {
            b.len() <= SLUG_MAX_LEN
                && alnum(first)
                && alnum(last)
                && middle.iter().all(|c| alnum(c) || *c == b'-')
        }
    }
}

/// Checks a slug, returning it unchanged when valid.
pub fn check_slug(s: &str) -> Result<&str, NamingError> {
    if is_valid_slug(s) {
        Ok(s)
    } else {
        Err(NamingError::Slug)
    }
}

/// The mesh namespace a project must use: `hub.<slug>`.
pub fn mesh_namespace(slug: &str) -> String {
    format!("hub.{slug}")
}

/// True when `namespace` is exactly `hub.<slug>`.
pub fn namespace_matches(slug: &str, namespace: &str) -> bool {
    namespace
        .strip_prefix("hub.")
        .is_some_and(|rest| rest == slug)
}

/// Spoke instance codes are ISO 3166-1 alpha-3 country codes in upper case
/// (`FRA`, `DEU`). The shape is checked here; the service also checks the code
/// is an assigned one.
pub fn is_valid_instance_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|c| c.is_ascii_uppercase())
}

/// The officially assigned ISO 3166-1 alpha-3 codes (249), sorted.
/// Reserved and user-assigned codes (e.g. XKX) are not spoke codes.
pub const ISO_3166_ALPHA3: [&str; 249] = [
    "ABW", "AFG", "AGO", "AIA", "ALA", "ALB", "AND", "ARE", "ARG", "ARM", "ASM", "ATA", "ATF",
    "ATG", "AUS", "AUT", "AZE", "BDI", "BEL", "BEN", "BES", "BFA", "BGD", "BGR", "BHR", "BHS",
    "BIH", "BLM", "BLR", "BLZ", "BMU", "BOL", "BRA", "BRB", "BRN", "BTN", "BVT", "BWA", "CAF",
    "CAN", "CCK", "CHE", "CHL", "CHN", "CIV", "CMR", "COD", "COG", "COK", "COL", "COM", "CPV",
    "CRI", "CUB", "CUW", "CXR", "CYM", "CYP", "CZE", "DEU", "DJI", "DMA", "DNK", "DOM", "DZA",
    "ECU", "EGY", "ERI", "ESH", "ESP", "EST", "ETH", "FIN", "FJI", "FLK", "FRA", "FRO", "FSM",
    "GAB", "GBR", "GEO", "GGY", "GHA", "GIB", "GIN", "GLP", "GMB", "GNB", "GNQ", "GRC", "GRD",
    "GRL", "GTM", "GUF", "GUM", "GUY", "HKG", "HMD", "HND", "HRV", "HTI", "HUN", "IDN", "IMN",
    "IND", "IOT", "IRL", "IRN", "IRQ", "ISL", "ISR", "ITA", "JAM", "JEY", "JOR", "JPN", "KAZ",
    "KEN", "KGZ", "KHM", "KIR", "KNA", "KOR", "KWT", "LAO", "LBN", "LBR", "LBY", "LCA", "LIE",
    "LKA", "LSO", "LTU", "LUX", "LVA", "MAC", "MAF", "MAR", "MCO", "MDA", "MDG", "MDV", "MEX",
    "MHL", "MKD", "MLI", "MLT", "MMR", "MNE", "MNG", "MNP", "MOZ", "MRT", "MSR", "MTQ", "MUS",
    "MWI", "MYS", "MYT", "NAM", "NCL", "NER", "NFK", "NGA", "NIC", "NIU", "NLD", "NOR", "NPL",
    "NRU", "NZL", "OMN", "PAK", "PAN", "PCN", "PER", "PHL", "PLW", "PNG", "POL", "PRI", "PRK",
    "PRT", "PRY", "PSE", "PYF", "QAT", "REU", "ROU", "RUS", "RWA", "SAU", "SDN", "SEN", "SGP",
    "SGS", "SHN", "SJM", "SLB", "SLE", "SLV", "SMR", "SOM", "SPM", "SRB", "SSD", "STP", "SUR",
    "SVK", "SVN", "SWE", "SWZ", "SXM", "SYC", "SYR", "TCA", "TCD", "TGO", "THA", "TJK", "TKL",
    "TKM", "TLS", "TON", "TTO", "TUN", "TUR", "TUV", "TWN", "TZA", "UGA", "UKR", "UMI", "URY",
    "USA", "UZB", "VAT", "VCT", "VEN", "VGB", "VIR", "VNM", "VUT", "WLF", "WSM", "YEM", "ZAF",
    "ZMB", "ZWE",
];

/// True for an upper-case, officially assigned ISO 3166-1 alpha-3 code.
pub fn is_assigned_alpha3(code: &str) -> bool {
    is_valid_instance_code(code) && ISO_3166_ALPHA3.binary_search(&code).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_rule_accepts_dns_labels() {
        for ok in ["a", "0", "alpha", "a-b", "hub-01", &"a".repeat(63)] {
            assert!(is_valid_slug(ok), "{ok} should be valid");
        }
    }

    #[test]
    fn slug_rule_rejects_everything_else() {
        let too_long = "a".repeat(64);
        for bad in [
            "", "-a", "a-", "A", "alpha_1", "al.pha", "al pha", "é", &too_long, "a--", "hub.x",
        ] {
            assert!(!is_valid_slug(bad), "{bad:?} should be invalid");
        }
        // inner double hyphens are allowed by the rule
        assert!(is_valid_slug("a--b"));
    }

    #[test]
    fn namespace_must_be_hub_dot_slug() {
        assert!(namespace_matches("alpha", "hub.alpha"));
        assert!(!namespace_matches("alpha", "hub.beta"));
        assert!(!namespace_matches("alpha", "alpha"));
        assert!(!namespace_matches("alpha", "hub.alpha.x"));
        assert_eq!(mesh_namespace("alpha"), "hub.alpha");
    }

    #[test]
    fn instance_codes_are_three_upper_case_letters() {
        assert!(is_valid_instance_code("FRA"));
        for bad in ["fra", "FR", "FRAN", "F1A", ""] {
            assert!(!is_valid_instance_code(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_code_list_is_sorted_unique_and_complete() {
        assert!(ISO_3166_ALPHA3.windows(2).all(|w| w[0] < w[1]));
        for code in [
            "FRA", "DEU", "GBR", "NLD", "USA", "ABW", "ZWE", "ALA", "SSD",
        ] {
            assert!(is_assigned_alpha3(code), "{code}");
        }
        for code in ["XKX", "AAA", "ZZZ", "EUR", "fra", "FR", "UK1", "SUN", "YUG"] {
            assert!(!is_assigned_alpha3(code), "{code}");
        }
    }
}
