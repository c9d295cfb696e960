//! Container image references: parsing `registry/repo:tag@digest` and pinning by digest.

/// A parsed image reference. Docker's grammar, reduced to what deploy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `123456789012.dkr.ecr.us-east-1.amazonaws.com`, or None for a Docker Hub short name.
    pub registry: Option<String>,
    /// The path after the registry, e.g. `team/backend`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d.to_string())),
            None => (s, None),
        };
        // A colon after the last slash separates the tag; one before it is a registry port.
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (
                &name[..last_slash + i],
                Some(name[last_slash + i + 1..].to_string()),
            ),
            None => (name, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (Some(first.to_string()), rest.to_string())
            }
            _ => (None, name.to_string()),
        };
        if repository.is_empty() {
            return None;
        }
        Some(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The ECR image id to look this reference up by: the digest if pinned, else the tag.
    pub fn ecr_id(&self) -> Option<EcrImageId> {
        match (&self.digest, &self.tag) {
            (Some(d), _) => Some(EcrImageId::Digest(d.clone())),
            (None, Some(t)) => Some(EcrImageId::Tag(t.clone())),
            (None, None) => Some(EcrImageId::Tag("latest".into())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EcrImageId {
    Digest(String),
    Tag(String),
}

/// The ECR registry host of `account` in `region`.
pub fn ecr_registry(account: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("{account}.dkr.ecr.{region}.{suffix}")
}

/// `registry/repository@digest`: what a pinned deploy runs, whatever the tag later points at.
pub fn pinned(registry: &str, repository: &str, digest: &str) -> String {
    format!("{registry}/{repository}@{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_shapes() {
        let r = ImageRef::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/backend:v1.4.2")
            .unwrap();
        assert_eq!(
            r.registry.as_deref(),
            Some("123456789012.dkr.ecr.us-east-1.amazonaws.com")
        );
        assert_eq!(r.repository, "team/backend");
        assert_eq!(r.tag.as_deref(), Some("v1.4.2"));
        assert_eq!(r.digest, None);

        let r = ImageRef::parse("reg.example:5000/backend@sha256:abc").unwrap();
        assert_eq!(r.registry.as_deref(), Some("reg.example:5000"));
        assert_eq!(r.repository, "backend");
        assert_eq!(r.tag, None);
        assert_eq!(r.ecr_id(), Some(EcrImageId::Digest("sha256:abc".into())));

        let r = ImageRef::parse("nginx").unwrap();
        assert_eq!(
            (r.registry.clone(), r.repository.as_str(), r.ecr_id()),
            (None, "nginx", Some(EcrImageId::Tag("latest".into())))
        );

        let r = ImageRef::parse("library/nginx:1.27").unwrap();
        assert_eq!(
            (r.registry, r.repository.as_str(), r.tag.as_deref()),
            (None, "library/nginx", Some("1.27"))
        );

        let r = ImageRef::parse("localhost/x:1@sha256:d").unwrap();
        assert_eq!(r.registry.as_deref(), Some("localhost"));
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(r.digest.as_deref(), Some("sha256:d"));
        assert!(ImageRef::parse("").is_none());
    }

    #[test]
    fn pins_by_digest_in_the_right_partition() {
        assert_eq!(
            pinned(&ecr_registry("1", "us-east-1"), "backend", "sha256:ab"),
            "1.dkr.ecr.us-east-1.amazonaws.com/backend@sha256:ab"
        );
        assert_eq!(
            ecr_registry("1", "cn-north-1"),
            "1.dkr.ecr.cn-north-1.amazonaws.com.cn"
        );
    }
}
