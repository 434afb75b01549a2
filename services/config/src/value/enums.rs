//! Keyword values such as `protocol = "smtp"`.

/// Declares an enum read from one of a fixed set of lowercase strings.
macro_rules! enum_value {
    ($(#[$meta:meta])* $vis:vis enum $name:ident {
        $(#[$fmeta:meta])* $first:ident = $first_text:literal
        $(, $(#[$vmeta:meta])* $variant:ident = $text:literal )* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $(#[$fmeta])* $first, $( $(#[$vmeta])* $variant ),* }

        impl $name {
            /// The keyword as written in the configuration.
            pub fn as_str(self) -> &'static str {
                match self { $name::$first => $first_text, $( $name::$variant => $text ),* }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::value::ValueType for $name {
            const TYPE: &'static str = concat!("\"", $first_text, "\"", $( " | \"", $text, "\"" ),*);
        }

        impl $crate::value::FromNode for $name {
            fn from_node(
                node: &$crate::tree::Node,
                cx: &$crate::value::Context<'_>,
            ) -> Result<Self, $crate::value::Invalid> {
                let text = <String as $crate::value::FromNode>::from_node(node, cx)?;
                match text.as_str() {
                    $first_text => Ok($name::$first),
                    $( $text => Ok($name::$variant), )*
                    other => Err($crate::value::Invalid::at(
                        node,
                        format!(
                            concat!("unknown value {:?}, expected ", "\"", $first_text, "\"", $( " | \"", $text, "\"" ),*),
                            other
                        ),
                    )),
                }
            }
        }
    };
}
pub(crate) use enum_value;
