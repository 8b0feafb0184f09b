#pragma once
// The Prometheus exporter: metrics kept by the pipeline, rendered in the text
// format or OpenMetrics, served over HTTP.
#include "format.hpp"
#include "http_exporter.hpp"
#include "metrics_state.hpp"
#include "pipeline.hpp"
#include "render.hpp"
#include "snapshot.hpp"
#include "text.hpp"
