//! What can go wrong, each with what the user can do about it and its exit status.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Bad arguments or settings (exit 2).
    Usage(String),
    /// The issuer has no device-code login for this client or account (exit 3).
    DeviceLoginDisabled { issuer: String },
    /// The code was not entered in time (exit 4).
    CodeExpired,
    /// No browser sign-in came back within this many seconds (exit 4).
    SignInTimedOut(u64),
    /// The issuer refused to complete the login: the code exchange, the device
    /// authorization or the browser sign-in (exit 5).
    Refused(String),
    /// Neither callback port could be bound (exit 6).
    PortBusy(Vec<u16>),
    /// A network, file or protocol problem (exit 1).
    Other(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Other(_) => 1,
            Self::Usage(_) => 2,
            Self::DeviceLoginDisabled { .. } => 3,
            Self::CodeExpired | Self::SignInTimedOut(_) => 4,
            Self::Refused(_) => 5,
            Self::PortBusy(_) => 6,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(problem) | Self::Other(problem) => f.write_str(problem),
            Self::DeviceLoginDisabled { issuer } => write!(
                f,
                "device code login is not enabled ({issuer} answered 404): enable device code login \
                 in ChatGPT security settings, or use --browser (`make login ARGS=--browser`)"
            ),
            Self::CodeExpired => f.write_str(
                "the code expired before the sign-in was completed: run `make login` again and \
                 enter the new code within 15 minutes",
            ),
            Self::SignInTimedOut(seconds) => write!(
                f,
                "no sign-in came back to the callback within {seconds}s: run `make login ARGS=--browser` \
                 again and open the new URL (or use the device code: `make login`)"
            ),
            Self::Refused(why) => write!(f, "the issuer refused the login: {why}; run `make login` again"),
            Self::PortBusy(ports) => {
                let ports: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
                write!(
                    f,
                    "the login callback port is busy ({} in use): stop what holds it (another login \
                     still waiting?) or use the device code login (`make login` without --browser)",
                    ports.join(" and ")
                )
            }
        }
    }
}
