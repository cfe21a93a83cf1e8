#pragma once

// Everything an actor application needs.

#include "courier/actor_ref.hpp"
#include "courier/behavior.hpp"
#include "courier/context.hpp"
#include "courier/deadline.hpp"
#include "courier/errc.hpp"
#include "courier/error.hpp"
#include "courier/message.hpp"
#include "courier/node.hpp"
#include "courier/notices.hpp"
#include "courier/options.hpp"
#include "courier/trace.hpp"
