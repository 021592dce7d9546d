//! Summary engines: the instruct LLM (`llm`, with the bullet parser in `bullets`) and the
//! model-free extractive engine.

pub mod bullets;
pub mod extractive;
pub mod llm;
