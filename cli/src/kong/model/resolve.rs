//! Resolving references once every service and consumer is known: routes, credentials,
//! groups and plugin scopes, and the names Kong keeps unique.

use super::super::fields::{self, Fields};
use super::super::input::{Node, Value};
use super::*;

impl<'a> Reader<'a, '_> {
    /// Reads what refers to services and consumers, now that all of them are known.
    pub(super) fn resolve(&mut self) -> Result<(), InputError> {
        self.check_unique()?;
        let services_by = names(
            self.config
                .services
                .iter()
                .map(|s| (s.name.as_deref(), s.id.as_deref())),
        );
        let consumers_by = names(
            self.config
                .consumers
                .iter()
                .map(|c| (c.username.as_deref(), c.id.as_deref())),
        );
        let custom_ids: HashMap<String, usize> = self
            .config
            .consumers
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.custom_id.clone().map(|id| (id, i)))
            .collect();

        let pending = std::mem::take(&mut self.pending_routes);
        let mut route_plugins = Vec::new();
        let mut per_service: HashMap<usize, usize> = HashMap::new();
        for (at, node, parent) in pending {
            let mut f = Fields::of(node, &at)?;
            let service = match parent {
                Some(s) => {
                    if f.has("service") {
                        let _ = f.get("service");
                    }
                    Some(s)
                }
                None => match f.get("service") {
                    None => None,
                    Some(r) => Some(reference(r, &f.loc("service"), "service", &services_by)?),
                },
            };
            let Some(service) = service else {
                let label = f.string("name")?.unwrap_or_else(|| "unnamed".to_owned());
                self.report.add(
                    &at.labelled(&label),
                    "route without a service",
                    "Kong answers it with an error (no upstream): not converted",
                );
                for (p_at, node) in f.list("plugins")? {
                    let name =
                        match &node.value {
                            Value::Map(entries) => entries
                                .iter()
                                .find(|(k, _)| k == "name")
                                .and_then(|(_, n)| match &n.value {
                                    Value::Str(s) => Some(s.clone()),
                                    _ => None,
                                }),
                            _ => None,
                        }
                        .unwrap_or_else(|| "unnamed".to_owned());
                    self.report.add(
                        &p_at.labelled(&name),
                        format!("plugin {name}"),
                        "on a route that is not converted",
                    );
                }
                continue;
            };
            let index_in_service = per_service.entry(service).or_insert(0);
            let position = *index_in_service;
            *index_in_service += 1;
            if let Some(route) = self.route(&at, f, service, position, &mut route_plugins)? {
                self.config.routes.push(route);
            }
        }
        self.check_route_names()?;
        let routes_by = names(
            self.config
                .routes
                .iter()
                .map(|r| (r.name.as_deref(), r.id.as_deref())),
        );

        let consumer_ref = |node: &Node, at: &Loc| -> Result<usize, InputError> {
            if let Value::Str(s) = &node.value {
                if !consumers_by.contains_key(s.as_str()) {
                    if let Some(i) = custom_ids.get(s.as_str()) {
                        return Ok(*i);
                    }
                }
            }
            reference(node, at, "consumer", &consumers_by)
        };

        // A credential's or group's consumer: the one it is nested in (a `consumer` field
        // there is taken as read, not reported), else its `consumer` reference.
        let owner = |f: &mut Fields<'_>, at: &Loc, parent: Option<usize>| match parent {
            Some(c) => {
                let _ = f.get("consumer");
                Ok(c)
            }
            None => match f.get("consumer") {
                Some(r) => consumer_ref(r, &f.loc("consumer")),
                None => Err(InputError::at(at, "no `consumer`")),
            },
        };

        let secrets = std::mem::take(&mut self.pending_secrets);
        for (at, node, parent) in secrets {
            let mut f = Fields::of(node, &at)?;
            let consumer = owner(&mut f, &at, parent)?;
            self.jwt_secret(&at, f, consumer)?;
        }
        let acls = std::mem::take(&mut self.pending_acls);
        for (at, node, parent) in acls {
            let mut f = Fields::of(node, &at)?;
            let consumer = owner(&mut f, &at, parent)?;
            let group_at = f.loc("group");
            let group = f
                .string("group")?
                .ok_or_else(|| InputError::at(&group_at, "missing"))?;
            self.rest(f, "acl");
            if self
                .config
                .acls
                .iter()
                .any(|a| a.consumer == consumer && a.group == group)
            {
                return Err(InputError::at(
                    &at,
                    format!(
                        "consumer {} is already in group {group:?}",
                        self.consumer_label(consumer)
                    ),
                ));
            }
            self.config.acls.push(Acl {
                at,
                consumer,
                group,
            });
        }

        let mut plugins = std::mem::take(&mut self.pending_plugins);
        for (at, node, route) in route_plugins {
            plugins.push((
                at,
                node,
                Scope {
                    route: Some(route),
                    ..Scope::default()
                },
            ));
        }
        plugins.sort_by_key(|(at, _, _)| at.seq);
        for (at, node, mut scope) in plugins {
            let mut f = Fields::of(node, &at)?;
            let name_at = f.loc("name");
            let name = f
                .string("name")?
                .ok_or_else(|| InputError::at(&name_at, "missing"))?;
            for (key, slot, by) in [
                ("service", &mut scope.service, &services_by),
                ("route", &mut scope.route, &routes_by),
            ] {
                let key_at = f.loc(key);
                if let Some(r) = f.get(key) {
                    let found = reference(r, &key_at, key, by)?;
                    if slot.is_some_and(|s| s != found) {
                        return Err(InputError::at(
                            &key_at,
                            format!("names another {key} than the one it is nested in"),
                        ));
                    }
                    *slot = Some(found);
                }
            }
            let consumer_at = f.loc("consumer");
            if let Some(r) = f.get("consumer") {
                let found = consumer_ref(r, &consumer_at)?;
                if scope.consumer.is_some_and(|c| c != found) {
                    return Err(InputError::at(
                        &consumer_at,
                        "names another consumer than the one it is nested in",
                    ));
                }
                scope.consumer = Some(found);
            }
            let enabled = f.bool("enabled")?.unwrap_or(true);
            let config = f.get("config").cloned();
            if let Some(c) = &config {
                if !matches!(c.value, Value::Map(_)) {
                    return Err(InputError::at(
                        &f.loc("config"),
                        format!("expected a mapping, found {}", c.value.kind()),
                    ));
                }
            }
            let protocols = f.strings("protocols")?;
            let consumer_group = f.get("consumer_group").is_some();
            let _ = f.get("instance_name");
            let labelled = at.labelled(&name);
            if let Some(node) = f.get("ordering") {
                self.report.add(
                    &f.loc("ordering"),
                    format!("field ordering ({})", fields::show(node)),
                    "plugin ordering is fixed in the conversion: jwt, acl, rate-limiting, then the router",
                );
            }
            self.rest(f, "plugin");
            if let Some(dup) = self.config.plugins.iter().find(|p| {
                p.name == name
                    && p.service == scope.service
                    && p.route == scope.route
                    && p.consumer == scope.consumer
                    && !p.consumer_group
                    && !consumer_group
            }) {
                return Err(InputError::at(
                    &at,
                    format!(
                        "a second {name} plugin with the same scope as {} (Kong allows one)",
                        dup.base.path
                    ),
                ));
            }
            self.config.plugins.push(Plugin {
                at: labelled,
                base: at,
                name,
                enabled,
                config,
                protocols,
                service: scope.service,
                route: scope.route,
                consumer: scope.consumer,
                consumer_group,
            });
        }
        Ok(())
    }
}
