//! The protobuf messages of Envoy's wasm crypto foreign functions, `verify_signature` and
//! `sign` (Envoy's `source/extensions/common/wasm/ext/verify_signature.proto` and
//! `sign.proto`), shared by the filters that call them and by host-test, which answers them.

use prost::Message;

/// `envoy.source.extensions.common.wasm.VerifySignatureArguments`.
#[derive(Clone, PartialEq, Message)]
pub struct VerifySignatureArguments {
    #[prost(string, tag = "1")]
    pub hash_function: String,
    #[prost(bytes = "vec", tag = "2")]
    pub public_key: Vec<u8>,
    #[prost(string, tag = "5")]
    pub public_key_pem: String,
    #[prost(bytes = "vec", tag = "3")]
    pub signature: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub text: Vec<u8>,
}

/// `envoy.source.extensions.common.wasm.VerifySignatureResult`.
#[derive(Clone, PartialEq, Message)]
pub struct VerifySignatureResult {
    #[prost(bool, tag = "1")]
    pub result: bool,
    #[prost(string, tag = "2")]
    pub error: String,
}

/// `envoy.source.extensions.common.wasm.SignArguments`.
#[derive(Clone, PartialEq, Message)]
pub struct SignArguments {
    #[prost(string, tag = "1")]
    pub hash_function: String,
    #[prost(bytes = "vec", tag = "2")]
    pub private_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub text: Vec<u8>,
    #[prost(string, tag = "4")]
    pub private_key_pem: String,
}

/// `envoy.source.extensions.common.wasm.SignResult`.
#[derive(Clone, PartialEq, Message)]
pub struct SignResult {
    #[prost(bool, tag = "1")]
    pub result: bool,
    #[prost(bytes = "vec", tag = "2")]
    pub signature: Vec<u8>,
    #[prost(string, tag = "3")]
    pub error: String,
}
