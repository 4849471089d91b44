//! Safe reader for the header of GGUF model files (llama.cpp's format).
//!
//! Hearth shows a model's architecture, size and quantization, and plans GPU
//! memory, before handing the file to llama.cpp. llama.cpp aborts or gives
//! terse errors on bad files, and users routinely pick half-downloaded,
//! renamed or wrong-format files, so this crate reads only the header, checks
//! it completely (including that the tensor data it describes fits in the
//! file), and explains every failure in words the user can act on.
//!
//! It also refuses the headers that parse but that llama.cpp would abort on
//! (0 layers, a million experts, a vocabulary entry that is not text: [`limits`]),
//! since llama.cpp trusts the header and aborts the whole process on some values.
//!
//! It never reads tensor data, never panics on any input, and keeps at most
//! [`reader::MEMORY_BUDGET`] bytes of header data whatever the file claims.
//!
//! ```no_run
//! let info = hearth_gguf::read(std::path::Path::new("model.gguf"))?;
//! println!("{:?} {:?} layers", info.architecture, info.block_count);
//! # Ok::<(), hearth_gguf::GgufError>(())
//! ```

pub mod builder;
mod error;
mod info;
pub mod limits;
mod metadata;
pub mod reader;
mod sniff;
mod types;

pub use error::{GgufError, Section};
pub use info::{GgufInfo, PatternSource, PerLayer, SlidingWindowPattern, TensorInfo};
pub use metadata::{ArrayValues, MetaArray, MetaValue, ValueType};
pub use reader::{read, read_from};
pub use types::{file_type_name, GgmlType};
