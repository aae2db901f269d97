//! Configuration: built-in defaults, then `rocky.toml`, then `ROCKY_*` variables, then flags,
//! each later source overriding the earlier, with the source of every value remembered so that
//! `rocky config` can say where each one came from.

mod load;
mod model;
mod secrets;

pub use load::{
    ConfigError, Loaded, Source, check_env_names, default_config_path, default_data_dir, layer, load,
};
pub use model::{
    Config, ConsoleSection, FirmwareSection, HttpSection, JobsSection, MqttSection, Palette, StoreSection,
};
pub use secrets::{
    HTTP_TOKEN_ENV, MQTT_PASSWORD_ENV, STORE_PASSWORD_ENV, SetupError, broker_connection, describe_secrets,
    http_token, postgres_settings,
};
