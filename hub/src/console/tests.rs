use super::*;

#[test]
fn csv_cells_are_quoted_and_formulas_defused() {
    assert_eq!(csv_cell("plain"), "plain");
    assert_eq!(csv_cell("a,b"), "\"a,b\"");
    assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
    assert_eq!(csv_cell("-1"), "'-1");
}

#[test]
fn a_cross_site_post_is_recognised() {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("hub.local:8443"));
    assert!(
        !cross_site(&h),
        "no Origin: a same-site form of an old browser"
    );
    h.insert("origin", HeaderValue::from_static("https://hub.local:8443"));
    assert!(!cross_site(&h));
    h.insert("origin", HeaderValue::from_static("https://evil.example"));
    assert!(cross_site(&h));
    h.insert("origin", HeaderValue::from_static("https://hub.local:8443"));
    h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
    assert!(cross_site(&h));
    // Chromium's own form under `Referrer-Policy: no-referrer`.
    h.insert("origin", HeaderValue::from_static("null"));
    h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
    assert!(!cross_site(&h));
    h.remove("sec-fetch-site");
    assert!(cross_site(&h), "Origin: null without Sec-Fetch-Site");
}

#[test]
fn the_csp_allows_only_the_tile_server_beside_the_hub() {
    let none = content_security_policy(&ConsoleConfig::default());
    assert!(none.contains("script-src 'self';"));
    assert!(!none.contains("unsafe-inline"));
    let tiles = ConsoleConfig {
        tile_url: Some("https://tiles.agency.local:8080/{z}/{x}/{y}.png".into()),
        tile_attribution: None,
    };
    assert!(content_security_policy(&tiles)
        .contains("img-src 'self' data: https://tiles.agency.local:8080;"));
}

#[test]
fn session_cookies_have_every_attribute() {
    let c = set_cookie(SESSION_COOKIE, "t", 60);
    for a in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(c.contains(a), "{c}");
    }
}
