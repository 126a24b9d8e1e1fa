#include "gguf/tensor_type.hpp"

namespace wgllm::gguf {

std::optional<TypeTraits> type_traits(uint32_t raw_type) {
  // Block sizes from ggml's block_* struct definitions (QK_K = 256).
  switch (static_cast<TensorType>(raw_type)) {
    case TensorType::F32: return TypeTraits{"f32", 1, 4};
    case TensorType::F16: return TypeTraits{"f16", 1, 2};
    case TensorType::Q4_0: return TypeTraits{"q4_0", 32, 18};
    case TensorType::Q4_1: return TypeTraits{"q4_1", 32, 20};
    case TensorType::Q5_0: return TypeTraits{"q5_0", 32, 22};
    case TensorType::Q5_1: return TypeTraits{"q5_1", 32, 24};
    case TensorType::Q8_0: return TypeTraits{"q8_0", 32, 34};
    case TensorType::Q8_1: return TypeTraits{"q8_1", 32, 36};
    case TensorType::Q2_K: return TypeTraits{"q2_K", 256, 84};
    case TensorType::Q3_K: return TypeTraits{"q3_K", 256, 110};
    case TensorType::Q4_K: return TypeTraits{"q4_K", 256, 144};
    case TensorType::Q5_K: return TypeTraits{"q5_K", 256, 176};
    case TensorType::Q6_K: return TypeTraits{"q6_K", 256, 210};
    case TensorType::Q8_K: return TypeTraits{"q8_K", 256, 292};
    case TensorType::IQ2_XXS: return TypeTraits{"iq2_xxs", 256, 66};
    case TensorType::IQ2_XS: return TypeTraits{"iq2_xs", 256, 74};
    case TensorType::IQ3_XXS: return TypeTraits{"iq3_xxs", 256, 98};
    case TensorType::IQ1_S: return TypeTraits{"iq1_s", 256, 50};
    case TensorType::IQ4_NL: return TypeTraits{"iq4_nl", 32, 18};
    case TensorType::IQ3_S: return TypeTraits{"iq3_s", 256, 110};
    case TensorType::IQ2_S: return TypeTraits{"iq2_s", 256, 82};
    case TensorType::IQ4_XS: return TypeTraits{"iq4_xs", 256, 136};
    case TensorType::I8: return TypeTraits{"i8", 1, 1};
    case TensorType::I16: return TypeTraits{"i16", 1, 2};
    case TensorType::I32: return TypeTraits{"i32", 1, 4};
    case TensorType::I64: return TypeTraits{"i64", 1, 8};
    case TensorType::F64: return TypeTraits{"f64", 1, 8};
    case TensorType::IQ1_M: return TypeTraits{"iq1_m", 256, 56};
    case TensorType::BF16: return TypeTraits{"bf16", 1, 2};
    case TensorType::TQ1_0: return TypeTraits{"tq1_0", 256, 54};
    case TensorType::TQ2_0: return TypeTraits{"tq2_0", 256, 66};
    case TensorType::MXFP4: return TypeTraits{"mxfp4", 32, 17};
  }
  return std::nullopt;
}

std::string_view type_name(TensorType type) {
  auto t = type_traits(static_cast<uint32_t>(type));
  return t ? t->name : std::string_view("unknown");
}

}  // namespace wgllm::gguf
