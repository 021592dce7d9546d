//! Summary engines: the model-free extractive engine (and, later, the instruct LLM).

pub mod extractive;
