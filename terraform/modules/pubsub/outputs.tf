# Outputs of the pubsub module.

output "dead_letter_subscriptions" {
  description = "Pull subscriptions on the dead-letter topics (where messages land after max_delivery_attempts), by topic short name."
  value       = { for k, s in google_pubsub_subscription.dead_letter : k => s.id }
}

output "subscriptions" {
  description = "Push subscription ids, by topic short name."
  value       = { for k, s in google_pubsub_subscription.push : k => s.id }
}

output "topics" {
  description = "Topic names (the DROPGATE_TOPIC_* values), by short name: the pushed topics and the outbound ones."
  value = merge(
    { for k, t in google_pubsub_topic.topic : k => t.name },
    { for k, t in google_pubsub_topic.outbound : k => t.name },
  )
}
