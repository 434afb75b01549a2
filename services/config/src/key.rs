//! Declarations of configuration keys: path, type, default and meaning in one place.
//!
//! The loader can read a key only through its declaration, and the configuration
//! reference is generated from the same declarations, so documentation and behaviour
//! cannot drift apart.

use std::marker::PhantomData;

use crate::value::{FromNode, ValueType};

/// Whether a key must be set, and what applies when it is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The key must be set.
    Required,
    /// The key may be left out; nothing applies then.
    Optional,
    /// The key may be left out; this TOML literal applies then.
    Default(&'static str),
    /// The key may be left out; the default depends on other keys, as described.
    Derived(&'static str),
}

/// One configuration key of type `T`.
pub struct Key<T> {
    /// Dotted path with placeholders, e.g. `remote.<id>.timeout`.
    pub path: &'static str,
    /// Whether it is required, and its default.
    pub presence: Presence,
    /// What it means, one sentence.
    pub doc: &'static str,
    kind: PhantomData<fn() -> T>,
}

impl<T> Key<T> {
    /// Declares a key.
    pub const fn new(path: &'static str, presence: Presence, doc: &'static str) -> Self {
        Self {
            path,
            presence,
            doc,
            kind: PhantomData,
        }
    }

    /// The last path segment: the name looked up in the enclosing table.
    pub fn name(&self) -> &'static str {
        self.path.rsplit('.').next().unwrap_or(self.path)
    }
}

/// The type-erased view of a key, for the generated reference.
pub trait KeyInfo: Sync {
    /// Dotted path with placeholders.
    fn path(&self) -> &'static str;
    /// The accepted values, in words.
    fn type_name(&self) -> &'static str;
    /// Required, optional or defaulted.
    fn presence(&self) -> Presence;
    /// What the key means.
    fn doc(&self) -> &'static str;
    /// Whether the declared default is a valid value of the key's type.
    fn check_default(&self) -> Result<(), String>;
}

impl<T: FromNode + ValueType> KeyInfo for Key<T> {
    fn path(&self) -> &'static str {
        self.path
    }
    fn type_name(&self) -> &'static str {
        T::TYPE
    }
    fn presence(&self) -> Presence {
        self.presence
    }
    fn doc(&self) -> &'static str {
        self.doc
    }
    fn check_default(&self) -> Result<(), String> {
        let Presence::Default(literal) = self.presence else {
            return Ok(());
        };
        let node =
            crate::tree::parse_default(literal).ok_or_else(|| format!("{literal} is not TOML"))?;
        let diagnostics = crate::diagnostics::Diagnostics::default();
        let cx = crate::value::Context {
            diagnostics: &diagnostics,
            env: &crate::value::ProcessEnvironment,
        };
        T::from_node(&node, &cx)
            .map(drop)
            .map_err(|invalid| invalid.message)
    }
}

/// Declares keys and the `ALL` list the reference is generated from.
macro_rules! keys {
    ($( $(#[$meta:meta])* $name:ident : $ty:ty = $path:literal, $presence:expr, $doc:literal; )*) => {
        $( $(#[$meta])* #[doc = $doc] pub static $name: $crate::key::Key<$ty> =
            $crate::key::Key::new($path, $presence, $doc); )*

        /// Every key, in reference order.
        pub static ALL: &[&dyn $crate::key::KeyInfo] = &[ $( &$name ),* ];
    };
}
pub(crate) use keys;

#[cfg(test)]
mod tests {
    use crate::keys::ALL;

    #[test]
    fn every_default_is_a_valid_value() {
        for key in ALL {
            assert_eq!(key.check_default(), Ok(()), "{}", key.path());
        }
    }

    #[test]
    fn every_path_is_declared_once() {
        let mut paths: Vec<_> = ALL.iter().map(|k| k.path()).collect();
        paths.sort_unstable();
        let before = paths.len();
        paths.dedup();
        assert_eq!(before, paths.len());
    }
}
