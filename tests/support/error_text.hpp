#pragma once
// The message of the exception `f` throws, so tests can check that an error
// names its cause; "no error" when it throws nothing.
#include <string>

namespace microsentinel::testing {

template <class Error, class F>
std::string error_text(F&& f)
{
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "no error";
}

} // namespace microsentinel::testing
