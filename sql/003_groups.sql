-- cim schema v3: groups. Applied to every shard database (im_0 .. im_3). Idempotent.
-- A group and its member list live on shard(group_id); each user's list of groups lives on
-- shard(user_id) (an index of the members table, rewritten on every membership change).

CREATE TABLE IF NOT EXISTS im_group (
    group_id        BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    group_name      VARCHAR(128) NOT NULL,
    group_type      TINYINT UNSIGNED NOT NULL DEFAULT 1,
    join_model      TINYINT UNSIGNED NOT NULL DEFAULT 0,  -- 0 anyone may join, 1 need auth, 2 reject
    be_invite_model TINYINT UNSIGNED NOT NULL DEFAULT 0,
    mute_model      TINYINT UNSIGNED NOT NULL DEFAULT 0,  -- 1: only the owner may send
    owner_id        BIGINT UNSIGNED NOT NULL,
    intro           VARCHAR(512) NOT NULL DEFAULT '',
    announcement    VARCHAR(1024) NOT NULL DEFAULT '',
    avatar          VARCHAR(512) NOT NULL DEFAULT '',
    version         INT UNSIGNED NOT NULL DEFAULT 1,      -- bumped on every change of info or members
    status          TINYINT UNSIGNED NOT NULL DEFAULT 0,  -- 0 active, 1 disbanded
    member_count    INT UNSIGNED NOT NULL DEFAULT 0,
    created         INT UNSIGNED NOT NULL,
    updated         INT UNSIGNED NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS im_group_member (
    group_id  BIGINT UNSIGNED NOT NULL,
    user_id   BIGINT UNSIGNED NOT NULL,
    joined    BIGINT UNSIGNED NOT NULL,   -- unix ms; the earliest joined becomes owner when the owner exits
    PRIMARY KEY (group_id, user_id),
    KEY k_joined (group_id, joined, user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS im_user_group (
    user_id   BIGINT UNSIGNED NOT NULL,
    group_id  BIGINT UNSIGNED NOT NULL,
    joined    BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (user_id, group_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT IGNORE INTO im_schema_version (version, applied) VALUES (3, UNIX_TIMESTAMP());
