//! Summary engines: the instruct LLM (`llm`, with its token generation in `decode` and the
//! bullet parser in `bullets`) and the model-free extractive engine.

pub mod bullets;
pub mod decode;
pub mod extractive;
pub mod llm;
