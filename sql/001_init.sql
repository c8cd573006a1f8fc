-- cim schema v1: applied to every shard database (im_0 .. im_3). Idempotent.
-- Tables marked "im_0 only" are created everywhere (harmless) but used only in im_0, the
-- directory shard: id allocation, worker-id leases and the user-name index.

CREATE TABLE IF NOT EXISTS im_schema_version (
    version INT UNSIGNED NOT NULL PRIMARY KEY,
    applied INT UNSIGNED NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- users live on shard(user_id)
CREATE TABLE IF NOT EXISTS im_user (
    user_id    BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    user_name  VARCHAR(32) NULL,              -- as typed; unique case-insensitively via im_user_name
    nick_name  VARCHAR(128) NOT NULL DEFAULT '',
    avatar_url VARCHAR(512) NOT NULL DEFAULT '',
    pwd_hash   VARCHAR(128) NULL,             -- argon2id (libsodium crypto_pwhash_str); NULL = no password
    token_ver  INT UNSIGNED NOT NULL DEFAULT 1,   -- bumped by rotation: older tokens stop working
    status     TINYINT UNSIGNED NOT NULL DEFAULT 0, -- 0 active, 1 disabled
    max_seq    BIGINT UNSIGNED NOT NULL DEFAULT 0,  -- highest inbox seq handed out (gap-free counter)
    created    INT UNSIGNED NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- im_0 only: user name -> id (name_lc = lower-case name, so names are unique case-insensitively)
CREATE TABLE IF NOT EXISTS im_user_name (
    name_lc   VARCHAR(32) NOT NULL PRIMARY KEY,
    user_id   BIGINT UNSIGNED NOT NULL,
    UNIQUE KEY uk_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- im_0 only: block allocator for user and group ids (below 2^53)
CREATE TABLE IF NOT EXISTS im_id_alloc (
    name    VARCHAR(16) NOT NULL PRIMARY KEY,
    next_id BIGINT UNSIGNED NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT IGNORE INTO im_id_alloc (name, next_id) VALUES ('user', 10000), ('group', 1000000000000);

-- im_0 only: leases of server_msg_id worker ids (0..1023), so no two live logics share one
CREATE TABLE IF NOT EXISTS im_worker (
    worker_id INT UNSIGNED NOT NULL PRIMARY KEY,
    owner     VARCHAR(64) NOT NULL,
    expires   BIGINT UNSIGNED NOT NULL      -- unix ms
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT IGNORE INTO im_schema_version (version, applied) VALUES (1, UNIX_TIMESTAMP());
