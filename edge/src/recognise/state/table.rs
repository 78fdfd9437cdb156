//! What US plates print that names their state: the 50 states and DC, their
//! names, the slogans and nicknames their plates carry, and the web
//! addresses some print. Written from the states' own plate designs, not from
//! any data set. A phrase is matched as letters and digits only (spaces and
//! punctuation dropped), so "Live Free or Die" is `LIVEFREEORDIE`.
//!
//! Left out on purpose: phrases several states print ("In God We Trust",
//! "America the Beautiful"), two-letter codes (registration stickers and
//! county codes make them misleading), and slogan fragments that are not
//! tied to the state on their own ("Stars Fell On" is only Alabama's when
//! "Alabama" follows, so only the whole phrase is listed).

/// How a phrase names its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The state's name, printed large on almost every plate.
    Name,
    /// A slogan or nickname printed on the state's plates.
    Slogan,
    /// A web address printed on the state's plates.
    Web,
}

impl Kind {
    /// How much a perfect match of this kind counts as evidence.
    pub fn weight(self) -> f32 {
        match self {
            Kind::Name => 1.0,
            Kind::Slogan | Kind::Web => 0.92,
        }
    }

    /// How the evidence is described in a read's provenance.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Name => "printed",
            Kind::Slogan => "slogan",
            Kind::Web => "web address",
        }
    }
}

/// One state: its postal code, its name, and what else its plates print.
#[derive(Debug, Clone, Copy)]
pub struct State {
    pub code: &'static str,
    pub name: &'static str,
    pub slogans: &'static [&'static str],
    pub web: &'static [&'static str],
}

impl State {
    /// Every phrase of this state with its kind, as printed.
    pub fn phrases(&self) -> impl Iterator<Item = (&'static str, Kind)> {
        std::iter::once((self.name, Kind::Name))
            .chain(self.slogans.iter().map(|s| (*s, Kind::Slogan)))
            .chain(self.web.iter().map(|s| (*s, Kind::Web)))
    }
}

const fn st(
    code: &'static str,
    name: &'static str,
    slogans: &'static [&'static str],
    web: &'static [&'static str],
) -> State {
    State {
        code,
        name,
        slogans,
        web,
    }
}

/// The 50 states and the District of Columbia.
pub const STATES: [State; 51] = [
    st(
        "AL",
        "Alabama",
        &[
            "Stars Fell on Alabama",
            "Heart of Dixie",
            "Sweet Home Alabama",
        ],
        &[],
    ),
    st(
        "AK",
        "Alaska",
        &["The Last Frontier", "North to the Future"],
        &[],
    ),
    st("AZ", "Arizona", &["Grand Canyon State"], &[]),
    st(
        "AR",
        "Arkansas",
        &["The Natural State", "Land of Opportunity"],
        &["arkansas.com"],
    ),
    st("CA", "California", &[], &["dmv.ca.gov"]),
    st("CO", "Colorado", &["Centennial State"], &[]),
    st(
        "CT",
        "Connecticut",
        &["Constitution State", "Still Revolutionary"],
        &[],
    ),
    st("DE", "Delaware", &["The First State"], &[]),
    st(
        "DC",
        "District of Columbia",
        &[
            "Washington DC",
            "Taxation Without Representation",
            "Celebrate and Discover",
            "A Capital City",
        ],
        &[],
    ),
    st("FL", "Florida", &["Sunshine State"], &["myflorida.com"]),
    st("GA", "Georgia", &["Peach State"], &[]),
    st("HI", "Hawaii", &["Aloha State"], &[]),
    st("ID", "Idaho", &["Famous Potatoes", "Scenic Idaho"], &[]),
    st("IL", "Illinois", &["Land of Lincoln"], &[]),
    st(
        "IN",
        "Indiana",
        &["Crossroads of America", "Hoosier State"],
        &[],
    ),
    st("IA", "Iowa", &["Hawkeye State"], &[]),
    st("KS", "Kansas", &["Sunflower State"], &[]),
    st(
        "KY",
        "Kentucky",
        &["Unbridled Spirit", "Bluegrass State"],
        &["kentucky.gov"],
    ),
    st(
        "LA",
        "Louisiana",
        &["Sportsman's Paradise", "Bayou State", "Pelican State"],
        &[],
    ),
    st("ME", "Maine", &["Vacationland"], &[]),
    st("MD", "Maryland", &["Treasure the Chesapeake"], &[]),
    st("MA", "Massachusetts", &["The Spirit of America"], &[]),
    st(
        "MI",
        "Michigan",
        &["Great Lakes", "Great Lake State", "Pure Michigan"],
        &[],
    ),
    st(
        "MN",
        "Minnesota",
        &["10,000 Lakes", "Explore Minnesota"],
        &["exploreminnesota.com"],
    ),
    st("MS", "Mississippi", &["Magnolia State"], &[]),
    st("MO", "Missouri", &["Show-Me State", "Show Me State"], &[]),
    st("MT", "Montana", &["Big Sky", "Treasure State"], &[]),
    st(
        "NE",
        "Nebraska",
        &["The Good Life", "Cornhusker State"],
        &[],
    ),
    st(
        "NV",
        "Nevada",
        &["Silver State", "Battle Born", "Home Means Nevada"],
        &[],
    ),
    st("NH", "New Hampshire", &["Live Free or Die"], &[]),
    st("NJ", "New Jersey", &["Garden State"], &[]),
    st("NM", "New Mexico", &["Land of Enchantment"], &[]),
    st("NY", "New York", &["Empire State", "Excelsior"], &[]),
    st(
        "NC",
        "North Carolina",
        &["First in Flight", "First in Freedom"],
        &[],
    ),
    st(
        "ND",
        "North Dakota",
        &["Peace Garden State", "Discover the Spirit", "Legendary"],
        &[],
    ),
    st(
        "OH",
        "Ohio",
        &[
            "Birthplace of Aviation",
            "Beautiful Ohio",
            "Heart of It All",
        ],
        &[],
    ),
    st(
        "OK",
        "Oklahoma",
        &["Native America", "Explore Oklahoma"],
        &["travelok.com", "oklahoma.gov"],
    ),
    st("OR", "Oregon", &["Pacific Wonderland"], &[]),
    st("PA", "Pennsylvania", &["Keystone State"], &["visitpa.com"]),
    st("RI", "Rhode Island", &["Ocean State"], &[]),
    st(
        "SC",
        "South Carolina",
        &["While I Breathe I Hope", "Smiling Faces Beautiful Places"],
        &["travel2sc.com", "discoversouthcarolina.com"],
    ),
    st(
        "SD",
        "South Dakota",
        &["Great Faces Great Places", "Mount Rushmore"],
        &[],
    ),
    st(
        "TN",
        "Tennessee",
        &["Volunteer State", "Sounds Good to Me"],
        &["tnvacation.com"],
    ),
    st("TX", "Texas", &["Lone Star State"], &[]),
    st(
        "UT",
        "Utah",
        &["Greatest Snow on Earth", "Life Elevated"],
        &[],
    ),
    st("VT", "Vermont", &["Green Mountain State"], &[]),
    st(
        "VA",
        "Virginia",
        &["Virginia is for Lovers", "Old Dominion"],
        &[],
    ),
    st("WA", "Washington", &["Evergreen State"], &[]),
    st(
        "WV",
        "West Virginia",
        &["Wild Wonderful", "Almost Heaven", "Open for Business"],
        &["wvtourism.com"],
    ),
    st("WI", "Wisconsin", &["America's Dairyland"], &[]),
    st(
        "WY",
        "Wyoming",
        &["Forever West", "Like No Place on Earth"],
        &[],
    ),
];

/// Upper-case letters and digits of `s`, nothing else (as plates are
/// normalised).
pub use alpr_shared::types::normalise_plate as squeeze;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifty_states_and_dc_once_each() {
        let mut codes: Vec<&str> = STATES.iter().map(|s| s.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), 51);
        assert!(codes.contains(&"DC"));
        // The very codes a signed read accepts (a code missing there would
        // make the read refuse the state).
        assert_eq!(codes, alpr_shared::types::US_STATES);
        assert!(STATES.iter().all(|s| s.code.len() == 2));
        assert_eq!(squeeze("Live Free or Die!"), "LIVEFREEORDIE");
        assert_eq!(squeeze("dmv.ca.gov"), "DMVCAGOV");
    }
}
