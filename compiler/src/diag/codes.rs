//! The table of diagnostic codes. A code is stable: once published it keeps its
//! meaning, and a retired code is never reused.
//!
//! Groups (STYLE.md): E01xx lexical and syntax, E02xx names, E03xx shapes, types,
//! index notation, causality and scans, E04xx scheduling, E05xx limits.

macro_rules! codes {
    ($($name:ident = $num:literal, $summary:literal;)*) => {
        /// A stable diagnostic code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $($name,)* }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &'static [Code] = &[$(Code::$name,)*];

            /// The number printed after `E` (`E0301`).
            pub fn number(self) -> u16 {
                match self { $(Code::$name => $num,)* }
            }

            /// One line that says what the code means (for `seqc explain` and docs).
            pub fn summary(self) -> &'static str {
                match self { $(Code::$name => $summary,)* }
            }
        }
    };
}

codes! {
    // E01xx: lexical and syntax
    InvalidUtf8 = 101, "source is not valid UTF-8";
    UnexpectedChar = 102, "a character that starts no token";
    UnterminatedString = 103, "a string literal without its closing quote";
    UnterminatedComment = 104, "a block comment without its closing `*/`";
    IntegerTooLarge = 105, "an integer literal above 2^63 - 1";
    InvalidEscape = 107, "a string escape other than `\\\"` and `\\\\`";
    UnexpectedToken = 110, "a token the grammar does not allow here";
    UnexpectedEof = 111, "the file ends in the middle of a construct";
    EmptyFile = 115, "a file with no layer and no model";
    SeveralModels = 116, "more than one model in a file";
    PositionalAfterKeyword = 117, "a positional argument after a keyword argument";
    InvalidInitIndices = 118, "`init[...]` lists something other than index names";
    DuplicateSection = 119, "a section that may appear once appears twice";

    // E02xx: names
    UnknownName = 201, "a name that is not defined here";
    UnknownLayer = 202, "a layer that is neither defined in the file nor in the prelude";
    Duplicate = 203, "a name defined twice in the same scope";
    UnknownConfigKey = 204, "a `--config` key the model does not declare";
    UnknownMember = 205, "a member that the value does not have";
    BadArguments = 206, "arguments that do not match the parameters";
    OutputNotAssigned = 208, "a model output that the forward never assigns";
    UnboundIndex = 209, "an index that no left side and no reduction binds";
    NotAGroup = 210, "`for` over something that is not a repeated weight group";
    NotCallable = 211, "a call of something that is not a layer or a function";
    DuplicateWeight = 212, "two declarations that give the same checkpoint name";
    RecursiveLayer = 213, "a layer that contains itself";
    NoForward = 214, "a layer or model without a `forward`, or with two";
    BadConfigValue = 216, "a `--config` value of the wrong type";
    MissingReturn = 218, "a layer forward that does not end with `return`";
    NoModel = 219, "a command that needs a model got a file of layers alone";

    // E03xx: shapes, types, index notation, causality, scans
    UnknownScanAxis = 301, "a scan over something that is not a dimension";
    ShapeMismatch = 302, "shapes that do not broadcast or do not match";
    WrongIndexCount = 303, "an access with more or fewer indices than the tensor has dimensions";
    IndexExtentConflict = 304, "one index used directly on dimensions of different extent";
    UnknownExtent = 305, "an index whose extent nothing determines";
    ExtentAnnotationConflict = 306, "an `i in D` annotation that disagrees with a direct use";
    RepeatedIndex = 307, "an index that appears twice on the left of a definition";
    SplitSizes = 309, "`split` sizes that do not add up to the last dimension";
    ReshapeCount = 310, "a `reshape` that changes the number of elements";
    InexactDivision = 311, "integer division of constants that leaves a remainder";
    DtypeMismatch = 312, "a value of the wrong dtype";
    ReturnMismatch = 314, "a forward that returns a shape other than the declared one";
    DivisionByZero = 316, "a constant division by zero";
    KindMismatch = 317, "a constant where a tensor is needed, or the reverse";
    ArityMismatch = 318, "a destructuring `let` with the wrong number of names";
    BooleanValue = 319, "a condition used as a number, or a number as a condition";
    NonCausalAccess = 320, "an access that reads a later position of the sequence";
    NonCausalReduction = 321, "a reduction over the sequence that is not masked to earlier positions";
    StateUpdate = 322, "a scan state updated twice, or never";
    StateThroughScanIndex = 323, "a scan state read through the scan index";
    ScanOutputIndex = 324, "a scan output not indexed by the scan index exactly once";
    StateInit = 325, "a scan state initial value that does not broadcast to the state";
    MisplacedStatement = 326, "a statement where it is not allowed";
    InvalidIndexExpr = 328, "an index expression that is not integer arithmetic on indices";
    InvalidDimension = 331, "a dimension that is not a positive integer or a symbol";
    ConstantOverflow = 332, "constant arithmetic that overflows 64 bits";
    BadInit = 333, "an `init` that does not fit its weight";

    // E05xx: limits
    NestingTooDeep = 501, "expressions or blocks nested beyond the limit";
    GroupTooLarge = 502, "a repeated weight group beyond the unrolling limit";
    TensorTooLarge = 503, "a tensor with more elements than the limit";
    FileTooLarge = 504, "a source file above the size limit";
    TooManyInstances = 505, "more layer instances than the limit";
    TooManyErrors = 506, "so many errors that checking stopped";
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "E{:04}", self.number())
    }
}
