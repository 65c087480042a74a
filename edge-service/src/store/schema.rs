//! The tables, as diesel sees them (written by hand to match both migration folders:
//! `migrations/sqlite/` and `migrations/postgres/`).

diesel::table! {
    records (id) {
        id -> BigInt,
        kind -> Text,
        origin -> Text,
        external_id -> Nullable<Text>,
        payload -> Text,
        received_at -> BigInt,
        state -> Text,
        detail -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    record_events (id) {
        id -> BigInt,
        record_id -> BigInt,
        state -> Text,
        detail -> Text,
        at -> BigInt,
    }
}

diesel::table! {
    commands (command_id) {
        command_id -> BigInt,
        idempotency_key -> Text,
        kind -> Text,
        payload -> Text,
        state -> Text,
        attempts -> Integer,
        detail -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    command_events (id) {
        id -> BigInt,
        command_id -> BigInt,
        attempt -> Integer,
        state -> Text,
        detail -> Text,
        at -> BigInt,
    }
}

diesel::table! {
    exceptions (id) {
        id -> BigInt,
        subject -> Text,
        reason -> Text,
        message -> Text,
        raised_at -> BigInt,
        records -> Text,
        resolved_at -> Nullable<BigInt>,
        resolution -> Nullable<Text>,
    }
}

diesel::table! {
    exception_records (exception_id, record_id) {
        exception_id -> BigInt,
        record_id -> BigInt,
    }
}

diesel::table! {
    latencies (id) {
        id -> BigInt,
        stock_key -> Text,
        ms -> BigInt,
        at -> BigInt,
    }
}

diesel::table! {
    cursors (feed) {
        feed -> Text,
        cursor -> Text,
        after_batch -> Nullable<Text>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    snapshots (id) {
        id -> BigInt,
        engine -> Text,
        last_record -> BigInt,
        taken_at -> BigInt,
    }
}

diesel::table! {
    pos_batches (seq) {
        seq -> BigInt,
        batch_id -> Text,
        connector -> Text,
        feed -> Text,
        source -> Nullable<Text>,
        body -> Text,
        records -> Integer,
        record_errors -> Integer,
        stored_at -> BigInt,
    }
}

diesel::joinable!(exception_records -> exceptions (exception_id));
diesel::allow_tables_to_appear_in_same_query!(exceptions, exception_records);

diesel::table! {
    leases (name) {
        name -> Text,
        holder -> Text,
        expires_at -> BigInt,
    }
}
