#pragma once

// Forward declarations of Courier's public types.

namespace courier {

class actor_ref;
class behavior;
class context;
class deadline;
class error;
class node;
class pending_broadcast;
class pending_request;
class responder;

struct broadcast_result;
struct dead_letter;
struct down_notice;
struct node_config;
struct post_options;
struct restart_policy;
struct spawn_options;

template <class T>
class expected;

namespace detail {

class node_impl;
class shell;
struct monitor_token;
struct name_slot;
struct responder_state;

} // namespace detail

} // namespace courier
