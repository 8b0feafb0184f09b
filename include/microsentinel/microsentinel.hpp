#pragma once
// Everything in the core that needs only the standard library. Headers that
// need libbpf (btf_layout.hpp) or libcurl (clickhouse/) are included on their own.
#include "capture.hpp"
#include "decode.hpp"
#include "layout.hpp"
#include "ms_sample.h"
#include "rows.hpp"
#include "sample.hpp"
