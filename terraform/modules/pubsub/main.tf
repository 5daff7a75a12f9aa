# Pub/Sub for the Cloud Run deployment: per topic, the topic itself, a push
# subscription to the consuming service with OIDC authentication, a dead-letter topic
# for messages that keep failing, and a pull subscription on it from which operators
# replay them (`dropgate dead-letter replay-pubsub`).
#
# Delivery is at least once. Exactly-once delivery is a feature of pull subscriptions
# only (Pub/Sub rejects or ignores it on push), so the push subscriptions leave it off
# and rely on the handlers being idempotent (a redelivered admission re-announces the
# recorded draw; a redelivered result is found applied). The dead-letter subscriptions
# are pulled, so they turn it on: an operator's ack there is final.
#
# Outbound topics (var.outbound_topics, today `winners`) are the other direction:
# dropgate publishes there for a consumer outside it and subscribes nowhere, so such a
# topic gets its publisher grants and nothing else: no push subscription, no
# dead-letter topic, and no replay grants (nothing of dropgate's ever dead-letters a
# message of it).

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # Pub/Sub's own service agent forwards failed messages to dead-letter topics and
  # mints the push tokens.
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  publishers = merge([
    for name, topic in var.topics : {
      for member in distinct(concat(topic.publishers, var.dead_letter_replayers)) :
      "${name} ${member}" => { topic = name, member = member }
    }
  ]...)

  dead_letter_replayers = merge([
    for name in keys(var.topics) : {
      for member in var.dead_letter_replayers : "${name} ${member}" => { topic = name, member = member }
    }
  ]...)

  # The outbound topics' publishers are exactly the ones listed for them: the
  # dead-letter replayers are left out, as there is nothing to replay to these.
  outbound_publishers = merge([
    for name, topic in var.outbound_topics : {
      for member in distinct(topic.publishers) : "${name} ${member}" => { topic = name, member = member }
    }
  ]...)
}

resource "google_pubsub_topic" "topic" {
  # checkov:skip=CKV_GCP_83: the messages hold user ids and draw outcomes, no secrets or personal data beyond what Redis and PostgreSQL keep; Google-managed encryption suffices, and a customer-managed key would add a KMS key ring and its rotation to every environment.
  for_each                   = var.topics
  project                    = var.project_id
  name                       = "${var.prefix}-${each.key}"
  labels                     = var.labels
  message_retention_duration = var.message_retention
}

# Retained like the others (var.message_retention, a week), which matters more here:
# dropgate creates no subscription on these topics, and the topic's own retention is
# what lets a downstream subscription created later, or one that seeks back in time,
# replay what was published before. Ordering needs nothing on the topic: the publisher
# sets the ordering key (for winners, the event id) and the downstream subscription
# turns on message ordering.
resource "google_pubsub_topic" "outbound" {
  # checkov:skip=CKV_GCP_83: as for the topics above (winners holds event and user ids, no secrets).
  for_each                   = var.outbound_topics
  project                    = var.project_id
  name                       = "${var.prefix}-${each.key}"
  labels                     = var.labels
  message_retention_duration = var.message_retention
}

resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83: as for the topics above.
  for_each                   = var.topics
  project                    = var.project_id
  name                       = "${var.prefix}-${each.key}-dead-letter"
  labels                     = var.labels
  message_retention_duration = var.message_retention
}

resource "google_pubsub_subscription" "push" {
  for_each             = var.topics
  project              = var.project_id
  name                 = "${var.prefix}-${each.key}-push"
  topic                = google_pubsub_topic.topic[each.key].id
  labels               = var.labels
  ack_deadline_seconds = each.value.push.ack_deadline_seconds
  # Ordering keys: the event for waiting-queue (one ordered batch of admissions per
  # admitter tick, pushed one at a time, so an event is decided in ticket order), the
  # user for result-notification.
  enable_message_ordering      = true
  enable_exactly_once_delivery = false
  message_retention_duration   = var.message_retention

  push_config {
    push_endpoint = each.value.push.endpoint
    oidc_token {
      service_account_email = var.push_service_account.email
      audience              = each.value.push.audience
    }
  }

  retry_policy {
    minimum_backoff = each.value.push.minimum_backoff
    maximum_backoff = each.value.push.maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = each.value.push.max_delivery_attempts
  }

  # Never deleted for inactivity: a drop may be weeks away.
  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "dead_letter" {
  for_each                     = var.topics
  project                      = var.project_id
  name                         = "${var.prefix}-${each.key}-dead-letter"
  topic                        = google_pubsub_topic.dead_letter[each.key].id
  labels                       = var.labels
  ack_deadline_seconds         = 60
  enable_exactly_once_delivery = true
  message_retention_duration   = var.message_retention

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = local.publishers
  project  = var.project_id
  topic    = google_pubsub_topic.topic[each.value.topic].name
  role     = "roles/pubsub.publisher"
  member   = each.value.member
}

# Topic-level, like the grants above: only the members listed for the topic (for
# winners, goods-worker alone) may publish to it.
resource "google_pubsub_topic_iam_member" "outbound_publisher" {
  for_each = local.outbound_publishers
  project  = var.project_id
  topic    = google_pubsub_topic.outbound[each.value.topic].name
  role     = "roles/pubsub.publisher"
  member   = each.value.member
}

# Replaying pulls (and acknowledges) on the dead-letter subscriptions; publishing back
# is granted with the topics' publishers above.
resource "google_pubsub_subscription_iam_member" "dead_letter_replayer" {
  for_each     = local.dead_letter_replayers
  project      = var.project_id
  subscription = google_pubsub_subscription.dead_letter[each.value.topic].name
  role         = "roles/pubsub.subscriber"
  member       = each.value.member
}

# Dead-lettering needs the service agent to publish to the dead-letter topic and to
# subscribe to (acknowledge on) the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = var.topics
  project  = var.project_id
  topic    = google_pubsub_topic.dead_letter[each.key].name
  role     = "roles/pubsub.publisher"
  member   = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each     = var.topics
  project      = var.project_id
  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# The service agent signs the push tokens as the push service account.
resource "google_service_account_iam_member" "token_creator" {
  service_account_id = var.push_service_account.id
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# The push identity may call the consuming services and nothing else.
resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  for_each = var.topics
  project  = var.project_id
  location = var.region
  name     = each.value.push.service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${var.push_service_account.email}"
}
