//! The AWS Query protocol: parameters in, XML out, errors in AWS's shape.

pub(crate) mod error;
pub(crate) mod params;
pub(crate) mod validate;
pub(crate) mod xml;

/// The two Query services the broker answers on one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    /// STS, `Version=2011-06-15`, credential scope `sts`.
    Sts,
    /// IAM, `Version=2010-05-08`, credential scope `iam`.
    Iam,
}

impl Service {
    /// The XML namespace of responses.
    pub(crate) fn namespace(self) -> &'static str {
        match self {
            Self::Sts => "https://sts.amazonaws.com/doc/2011-06-15/",
            Self::Iam => "https://iam.amazonaws.com/doc/2010-05-08/",
        }
    }

    /// The API version.
    pub(crate) fn version(self) -> &'static str {
        match self {
            Self::Sts => "2011-06-15",
            Self::Iam => "2010-05-08",
        }
    }

    /// The credential-scope service name.
    pub(crate) fn signing_name(self) -> &'static str {
        match self {
            Self::Sts => "sts",
            Self::Iam => "iam",
        }
    }

    /// Which service a request is for: its `Version` when that names one, else the service of
    /// its credential scope, else STS.
    pub(crate) fn for_request(version: Option<&str>, scope_service: Option<&str>) -> Self {
        match (version, scope_service) {
            (Some("2010-05-08"), _) => Self::Iam,
            (Some("2011-06-15"), _) => Self::Sts,
            (_, Some("iam")) => Self::Iam,
            _ => Self::Sts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_decides_then_scope() {
        assert_eq!(
            Service::for_request(Some("2010-05-08"), Some("sts")),
            Service::Iam
        );
        assert_eq!(
            Service::for_request(Some("2011-06-15"), Some("iam")),
            Service::Sts
        );
        assert_eq!(Service::for_request(None, Some("iam")), Service::Iam);
        assert_eq!(Service::for_request(Some("2000-01-01"), None), Service::Sts);
    }
}
