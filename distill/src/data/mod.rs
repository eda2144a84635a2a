//! Text in and out of the model: tokenizers (load, train, save) and chat templates.

pub mod chat;
pub mod tokenizer;
