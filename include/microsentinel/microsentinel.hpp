#pragma once
// Everything in the core that needs only the standard library and POSIX.
// Headers that need libbpf (btf_layout.hpp) or libcurl (clickhouse/), and the
// Prometheus exporter (prometheus/), are included on their own.
#include "capture.hpp"
#include "data_objects.hpp"
#include "decode.hpp"
#include "layout.hpp"
#include "ms_sample.h"
#include "proc_maps.hpp"
#include "rollup.hpp"
#include "rows.hpp"
#include "sample.hpp"
